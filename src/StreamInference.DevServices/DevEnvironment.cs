using StreamInference.DevServices.Kafka;
using StreamInference.DevServices.Redis;
using StreamInference.DevServices.SchemaRegistry;

namespace StreamInference.DevServices;

/// <summary>Where the services are, as printed by <c>dev up</c>.</summary>
public sealed record DevEndpoints(string BootstrapServers, string SchemaRegistryUrl, string Redis);

public sealed class DevEnvironmentOptions
{
    public int Brokers { get; set; } = 3;
    /// <summary>Topics to create with their partition counts.</summary>
    public Dictionary<string, int> Topics { get; set; } = new()
    {
        ["payments"] = 6,
        ["predictions"] = 6,
        ["payments.dlq"] = 1,
    };
    /// <summary>Use this Redis instead of starting Garnet (e.g. a local redis-server).</summary>
    public string? ExternalRedis { get; set; }
    public int RegistryPort { get; set; }
}

/// <summary>Embedded Kafka-protocol cluster + dev schema registry + Garnet, started together.</summary>
public sealed class DevEnvironment : IAsyncDisposable
{
    private DevEnvironment(MockKafkaCluster kafka, DevSchemaRegistry registry, EmbeddedGarnet? garnet, string redis)
    {
        Kafka = kafka;
        Registry = registry;
        Garnet = garnet;
        Endpoints = new DevEndpoints(kafka.BootstrapServers, registry.Url, redis);
    }

    public MockKafkaCluster Kafka { get; }
    public DevSchemaRegistry Registry { get; }
    public EmbeddedGarnet? Garnet { get; }
    public DevEndpoints Endpoints { get; }

    public static async Task<DevEnvironment> StartAsync(DevEnvironmentOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new DevEnvironmentOptions();
        var kafka = new MockKafkaCluster(options.Brokers);
        DevSchemaRegistry? registry = null;
        try
        {
            foreach (var (topic, partitions) in options.Topics) kafka.CreateTopic(topic, partitions, Math.Min(3, options.Brokers));
            registry = await DevSchemaRegistry.StartAsync(options.RegistryPort, cancellationToken: cancellationToken).ConfigureAwait(false);
            var garnet = options.ExternalRedis is null ? new EmbeddedGarnet() : null;
            return new DevEnvironment(kafka, registry, garnet, options.ExternalRedis ?? garnet!.Configuration);
        }
        catch
        {
            if (registry is not null) await registry.DisposeAsync().ConfigureAwait(false);
            kafka.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Garnet?.Dispose();
        await Registry.DisposeAsync().ConfigureAwait(false);
        Kafka.Dispose();
    }
}
