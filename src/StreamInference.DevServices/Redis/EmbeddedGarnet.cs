using System.Net;
using System.Net.Sockets;
using Garnet;
using Garnet.server;

namespace StreamInference.DevServices.Redis;

/// <summary>Microsoft Garnet, a RESP (Redis-protocol) server, running in this process on a loopback port.</summary>
public sealed class EmbeddedGarnet : IDisposable
{
    private readonly GarnetServer _server;

    public EmbeddedGarnet(int port = 0)
    {
        Port = port == 0 ? FreePort() : port;
        _server = new GarnetServer(new GarnetServerOptions
        {
            EndPoints = [new IPEndPoint(IPAddress.Loopback, Port)],
            QuietMode = true,
            EnableLua = true,
            LuaOptions = new LuaOptions(logger: null),
            LogMemorySize = "256m",
            IndexMemorySize = "16m",
        });
        _server.Start();
    }

    public int Port { get; }
    /// <summary>StackExchange.Redis configuration string.</summary>
    public string Configuration => $"127.0.0.1:{Port}";

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public void Dispose() => _server.Dispose();
}
