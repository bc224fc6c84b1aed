using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Hosting;

return await ServiceRunner.RunAsync(args, "engram-device", (services, configuration) => services.AddDevice(configuration));
