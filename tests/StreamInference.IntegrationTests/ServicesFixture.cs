using System.Net.Sockets;
using Confluent.Kafka.Admin;
using StreamInference.DevServices.Kafka;
using StreamInference.DevServices.Redis;
using StreamInference.DevServices.SchemaRegistry;
using Testcontainers.Kafka;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Real servers for the integration tests. Kafka: KAFKA_BOOTSTRAP_SERVERS when set, else a
/// Testcontainers broker when a Docker engine answers, else the embedded Kafka-protocol cluster.
/// Redis: REDIS_URL when set, else redis-server from PATH, else Garnet in-process. The schema registry
/// is the dev registry over real HTTP (or SCHEMA_REGISTRY_URL).
/// </summary>
public sealed class ServicesFixture : IAsyncLifetime
{
    private MockKafkaCluster? _mock;
    private KafkaContainer? _container;
    private DevSchemaRegistry? _registry;
    private LocalRedisServer? _redisServer;
    private EmbeddedGarnet? _garnet;

    public string BootstrapServers { get; private set; } = "";
    public string SchemaRegistryUrl { get; private set; } = "";
    public string Redis { get; private set; } = "";
    public string KafkaKind { get; private set; } = "";
    public string RedisKind { get; private set; } = "";
    public MockKafkaCluster? Mock => _mock;

    public async Task InitializeAsync()
    {
        if (Environment.GetEnvironmentVariable("KAFKA_BOOTSTRAP_SERVERS") is { Length: > 0 } kafka)
        {
            BootstrapServers = kafka;
            KafkaKind = "external broker";
        }
        else if (DockerAnswers())
        {
            _container = new KafkaBuilder("confluentinc/cp-kafka:7.6.1").Build();
            await _container.StartAsync();
            BootstrapServers = _container.GetBootstrapAddress();
            KafkaKind = "Testcontainers broker";
        }
        else
        {
            _mock = new MockKafkaCluster(3);
            ProcessorHarness.EmbeddedKafka = true;
            BootstrapServers = _mock.BootstrapServers;
            KafkaKind = "embedded Kafka-protocol cluster";
        }

        if (Environment.GetEnvironmentVariable("SCHEMA_REGISTRY_URL") is { Length: > 0 } registry) SchemaRegistryUrl = registry;
        else
        {
            _registry = await DevSchemaRegistry.StartAsync();
            SchemaRegistryUrl = _registry.Url;
        }

        if (Environment.GetEnvironmentVariable("REDIS_URL") is { Length: > 0 } redisUrl)
        {
            Redis = StreamInference.Infrastructure.Processing.RedisUrl.ToConfiguration(redisUrl);
            RedisKind = "external Redis";
        }
        else if (await LocalRedisServer.TryStartAsync() is { } redisServer)
        {
            _redisServer = redisServer;
            Redis = redisServer.Configuration;
            RedisKind = "redis-server";
        }
        else
        {
            _garnet = new EmbeddedGarnet();
            Redis = _garnet.Configuration;
            RedisKind = "Garnet";
        }
    }

    /// <summary>The input events' Avro schema (schemas/payment-event.avsc), as upstream producers write it.</summary>
    public static Avro.RecordSchema PaymentEventSchema { get; } =
        (Avro.RecordSchema)Avro.Schema.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "schemas", "payment-event.avsc")));

    /// <summary>The repository's feature set (schemas/features/card_payments.yaml), the one the processor options use.</summary>
    public static StreamInference.Core.Features.FeaturePlan CardPaymentsPlan { get; } =
        StreamInference.Core.Features.FeatureSetLoader.LoadFile(Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"));

    /// <summary>
    /// Processor options against these services with the repository's feature set, reader schema and
    /// model; drift monitoring off (the drift tests turn it on). Tests adjust what they need.
    /// </summary>
    public ProcessorOptions ProcessorOptions(string input, string output, string deadLetters, string group)
    {
        var baseDir = AppContext.BaseDirectory;
        var options = new ProcessorOptions
        {
            Kafka = new()
            {
                BootstrapServers = BootstrapServers, GroupId = group, InputTopic = input, OutputTopic = output, DeadLetterTopic = deadLetters,
                // The embedded cluster holds a rebalance until departed members' sessions expire: keep that short.
                Consumer = new() { SessionTimeoutMs = 6000, HeartbeatIntervalMs = 1000 },
            },
            SchemaRegistry = new() { Url = SchemaRegistryUrl },
            Redis = new() { Configuration = Redis },
            Model = new() { Repository = Path.Combine(baseDir, "models") },
            Features = new()
            {
                Definition = Path.Combine(baseDir, "schemas", "features", "card_payments.yaml"),
                ReaderSchema = Path.Combine(baseDir, "schemas", "payment-event.avsc"),
            },
            Drift = new() { Enabled = false },
        };
        return options;
    }

    /// <summary><see cref="ProcessorOptions(string, string, string, string)"/> for a test's topics, in a new consumer group.</summary>
    public ProcessorOptions ProcessorOptions(Topics topics, string? group = null) =>
        ProcessorOptions(topics.Input, topics.Predictions, topics.DeadLetters, group ?? NewGroup());

    /// <summary>A consumer group (or transactional id) no other test uses.</summary>
    public static string NewGroup(string prefix = "g") => $"{prefix}-{Guid.NewGuid():N}";

    /// <summary>
    /// <see cref="ProcessorOptions"/> as <c>--set</c> settings for a <c>serve</c> child process: these services,
    /// topics and group, a short session (the embedded cluster holds rebalances until departed members
    /// expire), and /metrics on a free loopback port (<see cref="ChildProcess.ListeningPort"/>).
    /// </summary>
    public Dictionary<string, string> ChildSettings(ProcessorOptions o)
    {
        var settings = new Dictionary<string, string>
        {
            ["Kafka:BootstrapServers"] = o.Kafka.BootstrapServers,
            ["Kafka:GroupId"] = o.Kafka.GroupId,
            ["Kafka:InputTopic"] = o.Kafka.InputTopic,
            ["Kafka:OutputTopic"] = o.Kafka.OutputTopic,
            ["Kafka:DeadLetterTopic"] = o.Kafka.DeadLetterTopic,
            ["Kafka:Consumer:SessionTimeoutMs"] = $"{o.Kafka.Consumer.SessionTimeoutMs}",
            ["Kafka:Consumer:HeartbeatIntervalMs"] = $"{o.Kafka.Consumer.HeartbeatIntervalMs}",
            ["SchemaRegistry:Url"] = o.SchemaRegistry.Url,
            ["Redis:Configuration"] = o.Redis.Configuration,
            ["Model:Repository"] = o.Model.Repository,
            ["Features:Definition"] = o.Features.Definition,
            ["Features:ReaderSchema"] = o.Features.ReaderSchema,
            ["Http:Host"] = "127.0.0.1",
            ["Http:Port"] = "0",
        };
        return settings;
    }

    /// <summary>A test's input, prediction and dead-letter topics.</summary>
    public sealed record Topics(string Input, string Predictions, string DeadLetters);

    /// <summary>Input and prediction topics of <paramref name="partitions"/> partitions, and a dead-letter topic.</summary>
    public async Task<Topics> CreateTopicsAsync(int partitions, int deadLetterPartitions = 1) => new(
        await CreateTopicAsync("payments", partitions),
        await CreateTopicAsync("predictions", partitions),
        await CreateTopicAsync("dlq", deadLetterPartitions));

    /// <summary>A client of this fixture's schema registry.</summary>
    public AvroSchemaRegistry RegistryClient() => new(new SchemaRegistryOptions { Url = SchemaRegistryUrl });

    /// <summary>Synthetic payment events, written with <see cref="PaymentEventSchema"/> through the registry.</summary>
    /// <summary>
    /// The live synthetic world follows the hour of the day: at night most payments are fraud. Tests whose expectations
    /// hold for daytime traffic produce at a simulated daytime (ProduceOptions.ClockOffset): now between 09:00 and 19:00
    /// UTC, else the next 13:00. Never in the past, where lookup snapshots written now would not be known yet.
    /// </summary>
    public static TimeSpan DaytimeClockOffset()
    {
        var now = DateTimeOffset.UtcNow;
        if (now.Hour is >= 9 and < 19) return TimeSpan.Zero;
        var target = new DateTimeOffset(now.UtcDateTime.Date.AddHours(13), TimeSpan.Zero);
        return (target < now ? target.AddDays(1) : target) - now;
    }

    public async Task<ProduceSummary> ProduceAsync(ProduceOptions options)
    {
        using var registry = RegistryClient();
        return await SyntheticPaymentProducer.ProduceAsync(BootstrapServers, registry, PaymentEventSchema, options, null, CancellationToken.None);
    }

    /// <summary>Creates a topic with a unique name and returns it.</summary>
    public async Task<string> CreateTopicAsync(string prefix, int partitions)
    {
        var name = $"{prefix}-{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, 60)];
        if (_mock is not null)
        {
            _mock.CreateTopic(name, partitions, 3);
            return name;
        }
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = BootstrapServers }).Build();
        await admin.CreateTopicsAsync([new TopicSpecification { Name = name, NumPartitions = partitions, ReplicationFactor = 1 }]);
        return name;
    }

    private static bool DockerAnswers()
    {
        if (Environment.GetEnvironmentVariable("DOCKER_HOST") is { Length: > 0 }) return true;
        const string socket = "/var/run/docker.sock";
        if (!File.Exists(socket)) return false;
        try
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public async Task DisposeAsync()
    {
        _redisServer?.Dispose();
        _garnet?.Dispose();
        if (_registry is not null) await _registry.DisposeAsync();
        if (_container is not null) await _container.DisposeAsync();
        _mock?.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class ServicesCollection : ICollectionFixture<ServicesFixture>
{
    public const string Name = "services";
}
