using Engram.Pipeline.Device;
using Engram.Pipeline.Hosting;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddDevice(builder.Configuration);
return await builder.Build().RunServiceAsync();
