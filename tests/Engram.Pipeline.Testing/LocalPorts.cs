using System.Net;
using System.Net.Sockets;

namespace Engram.Pipeline.Testing;

/// <summary>Ports on this host.</summary>
public static class LocalPorts
{
    /// <summary>A loopback port no process listens on now.</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
