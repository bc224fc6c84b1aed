# Every service's image, from one build of the repository:
#   docker build --target cloud-ingest -t engram-pipeline/cloud-ingest .
#   docker build --target device       -t engram-pipeline/device .
#   docker build --target cli          -t engram-pipeline/cli .
# docker-compose.yml builds each service with its target. Each image holds only its own program, runs as the
# non-root user `app`, and (the long-running ones) checks its health with the program's own `probe`.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY contracts/ contracts/
COPY services/ services/
RUN dotnet publish services/Engram.Pipeline.CloudIngest -c Release -p:UseAppHost=false -o /out/cloud-ingest \
 && dotnet publish services/Engram.Pipeline.Device -c Release -p:UseAppHost=false -o /out/device \
 && dotnet publish services/Engram.Pipeline.Cli -c Release -p:UseAppHost=false -o /out/cli

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
# The device's database lives in a volume mounted here; a new named volume takes this owner.
RUN mkdir /data && chown app /data
USER app

FROM runtime AS cloud-ingest
COPY --from=build /out/cloud-ingest .
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 CMD ["dotnet", "Engram.Pipeline.CloudIngest.dll", "probe"]
ENTRYPOINT ["dotnet", "Engram.Pipeline.CloudIngest.dll"]

FROM runtime AS device
COPY --from=build /out/device .
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 CMD ["dotnet", "Engram.Pipeline.Device.dll", "probe"]
ENTRYPOINT ["dotnet", "Engram.Pipeline.Device.dll"]

FROM runtime AS cli
COPY --from=build /out/cli .
ENTRYPOINT ["dotnet", "engram-pipeline.dll"]
