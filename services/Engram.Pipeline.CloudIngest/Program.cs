using Engram.Pipeline.Cloud;
using Engram.Pipeline.Hosting;

return await ServiceRunner.RunAsync(args, "engram-cloud-ingest", (services, configuration) => services.AddCloudIngest(configuration));
