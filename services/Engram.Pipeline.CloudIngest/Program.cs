using Engram.Pipeline.Cloud;
using Engram.Pipeline.Hosting;

var builder = WebApplication.CreateBuilder(args);
if (args is ["probe", ..])
{
    return await Operations.ProbeAsync(builder.Configuration["Urls"]);
}
builder.AddOperations("engram-cloud-ingest");
builder.Services.AddCloudIngest(builder.Configuration);
var app = builder.Build();
app.MapOperations();
return await app.RunServiceAsync();
