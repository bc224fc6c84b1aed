using Engram.Pipeline.CloudIngest;
using Engram.Pipeline.Hosting;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddCloudIngest(builder.Configuration);
return await builder.Build().RunServiceAsync();
