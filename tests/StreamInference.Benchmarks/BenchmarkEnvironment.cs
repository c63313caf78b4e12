using Avro;
using StreamInference.Batch.Synthetic;
using StreamInference.Core.Features;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;
using StreamInference.DevServices.SchemaRegistry;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.Benchmarks;

/// <summary>
/// What the benchmarks share: where the repository's schemas and models are, the example feature set,
/// and synthetic payment events in the Confluent wire format, decoded into batches as the pipeline
/// would see them.
/// </summary>
public static class BenchmarkEnvironment
{
    /// <summary>
    /// StackExchange.Redis configuration of the server the Redis benchmarks use (e.g. "localhost:6379").
    /// Null: each benchmark starts an embedded Garnet on a loopback port. Defaults to the environment
    /// variable <c>STREAMINFERENCE_BENCH_REDIS</c>, so the standalone (out-of-process) runner can be
    /// pointed at a server too. The benchmarks only touch keys under a unique per-run prefix and delete
    /// them afterwards.
    /// </summary>
    public static string? RedisConfiguration { get; set; } = Environment.GetEnvironmentVariable("STREAMINFERENCE_BENCH_REDIS") is { Length: > 0 } redis ? redis : null;

    /// <summary>Event time of the synthetic events (plus one millisecond per event).</summary>
    public static readonly DateTimeOffset EventTime = new(2026, 2, 16, 12, 0, 0, TimeSpan.Zero);

    /// <summary>Schema id the synthetic events are framed with: the payment schema, the first one in <see cref="Registry"/>.</summary>
    public const int PaymentSchemaId = 1;

    /// <summary>Subject of <see cref="PaymentSchemaId"/> (TopicNameStrategy for the topic "payments").</summary>
    public const string PaymentSubject = "payments-value";

    /// <summary>
    /// A dev schema registry on a loopback port (started once per process, with the payment schema preloaded as
    /// id 1) and Confluent's client for it: decoders and Confluent's serdes fetch schemas once and then run from
    /// their caches, as in steady state.
    /// </summary>
    public static AvroSchemaRegistry Registry => s_registry.Value.Client;
    private static readonly Lazy<(DevSchemaRegistry Server, AvroSchemaRegistry Client)> s_registry = new(() =>
    {
        var server = DevSchemaRegistry.StartAsync(0, [(PaymentSubject, (AvroSchema)LoadPaymentSchema())]).GetAwaiter().GetResult();
        return (server, new AvroSchemaRegistry(new SchemaRegistryOptions { Url = server.Url }));
    });

    /// <summary>
    /// The repository root (the directory holding StreamInference.sln), found walking up from the
    /// application directory, then from the working directory; failing both, an application directory
    /// that carries schemas/ and models/ itself (the CLI copies them next to its binary).
    /// </summary>
    public static string RepositoryRoot => s_root ??= FindRoot();
    private static string? s_root;

    public static string SchemasDirectory => Path.Combine(RepositoryRoot, "schemas");
    public static string ModelsDirectory => Path.Combine(RepositoryRoot, "models");

    public static FeaturePlan LoadPlan() => FeatureSetLoader.LoadFile(Path.Combine(SchemasDirectory, "features", "card_payments.yaml"));

    public static RecordSchema LoadPaymentSchema() =>
        (RecordSchema)AvroSchema.Parse(File.ReadAllText(Path.Combine(SchemasDirectory, "payment-event.avsc")));

    /// <summary>
    /// <paramref name="count"/> synthetic payments (fixed seed, all at <paramref name="eventTime"/> plus
    /// one millisecond per event) in the Confluent wire format. Card and merchant ids carry
    /// <paramref name="idPrefix"/>, so keys written to a shared Redis cannot collide with real ones.
    /// </summary>
    public static byte[][] EncodePayments(int count, DateTimeOffset eventTime, string idPrefix = "")
    {
        var schema = LoadPaymentSchema();
        var generator = new PaymentGenerator(seed: 11);
        var payloads = new byte[count][];
        for (var i = 0; i < count; i++)
        {
            var e = generator.Next(eventTime.AddMilliseconds(i));
            if (idPrefix.Length > 0) e = e with { CardId = idPrefix + e.CardId, MerchantId = idPrefix + e.MerchantId };
            payloads[i] = SyntheticPaymentProducer.Encode(schema, PaymentSchemaId, e);
        }
        return payloads;
    }

    /// <summary>A decoder over <see cref="Registry"/>, reading with the payment schema.</summary>
    public static AvroEventDecoder CreateDecoder(FeaturePlan plan) => new(Registry, LoadPaymentSchema(), plan);

    /// <summary>
    /// Batches of <paramref name="batchSize"/> records over <paramref name="payloads"/> (consecutive offsets
    /// 0.. of one partition, in order), decoded and with their clean rows collected: what the batch stage
    /// holds when it calls the feature store.
    /// </summary>
    public static EventBatch[] DecodeBatches(FeaturePlan plan, byte[][] payloads, int batchSize, int scoreWidth = 1)
    {
        var decoder = CreateDecoder(plan);
        var partition = new PartitionOffsets("payments", 0, payloads.Length);
        var batches = new EventBatch[(payloads.Length + batchSize - 1) / batchSize];
        for (var b = 0; b < batches.Length; b++)
        {
            var batch = new EventBatch(plan, batchSize, scoreWidth);
            var n = Math.Min(batchSize, payloads.Length - b * batchSize);
            for (var i = 0; i < n; i++)
            {
                var offset = (long)b * batchSize + i;
                batch.Records[i] = new InputRecord(partition, partition.Track(offset), offset, null, payloads[offset], 0, null);
            }
            batch.Count = n;
            decoder.DecodeAsync(batch, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            batch.CollectCleanRows();
            if (batch.OkCount != n) throw new InvalidOperationException($"{n - batch.OkCount} synthetic events did not decode: {batch.DeadLetterReasons.FirstOrDefault(r => r is not null)}");
            batches[b] = batch;
        }
        return batches;
    }

    private static string FindRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "StreamInference.sln"))) return dir.FullName;
        }
        if (File.Exists(Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"))
            && Directory.Exists(Path.Combine(AppContext.BaseDirectory, "models")))
            return AppContext.BaseDirectory;
        throw new DirectoryNotFoundException(
            $"Repository root (StreamInference.sln) not found above '{AppContext.BaseDirectory}' or '{Directory.GetCurrentDirectory()}', " +
            "and the application directory has no schemas/ and models/.");
    }
}
