using Engram.Pipeline.Device;
using Engram.Pipeline.Hosting;

var builder = WebApplication.CreateBuilder(args);
if (args is ["probe", ..])
{
    return await Operations.ProbeAsync(builder.Configuration["Urls"] ?? "http://127.0.0.1:8080");
}
builder.AddOperations("engram-device");
builder.Services.AddDevice(builder.Configuration);
var app = builder.Build();
app.MapOperations();
return await app.RunServiceAsync();
