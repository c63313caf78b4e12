using System.CommandLine;
using Confluent.Kafka;
using StreamInference.Infrastructure.Kafka;

namespace StreamInference.Cli;

/// <summary>
/// <c>bench</c>: the processor measured against the raw components on the same machine in the same
/// run (see <see cref="BenchRunner"/>); <c>bench passthrough</c> and <c>bench baseline</c> (<see cref="BenchBaseline"/>)
/// are the baselines it launches.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var events = new Option<int>("--events") { Description = "Input events for the throughput runs (processor, passthrough and hand-written baseline read the same topic).", DefaultValueFactory = _ => 300_000 };
        var partitions = new Option<int>("--partitions") { Description = "Partitions of the benchmark topics (the embedded cluster keeps a few megabytes per partition).", DefaultValueFactory = _ => 12 };
        var step = new Option<double>("--latency-seconds") { Description = "Length of each open-loop step: the probes of the sustainable-rate searches and the latency steps at 25/50/80 % of the processor's sustainable rate (the first 2 s are warm-up).", DefaultValueFactory = _ => 10 };
        var kafka = new Option<string?>("--bootstrap-servers") { Description = "Measure against this Kafka instead of the embedded Kafka-protocol cluster (topics bench-*-<run id> are created and deleted)." };
        var registry = new Option<string?>("--schema-registry-url") { Description = "Schema registry to use (default: the embedded dev registry)." };
        var redis = new Option<string?>("--redis") { Description = "Redis configuration or redis:// URL (default: REDIS_URL, else a local redis-server process when installed, else embedded Garnet). Its feature keys are overwritten with the synthetic warm start." };
        var output = new Option<string>("--output") { Description = "Results without extension: <output>.md and <output>.json.", DefaultValueFactory = _ => "docs/benchmarks" };
        var skipMicro = new Option<bool>("--skip-micro") { Description = "Only the end-to-end measurements (no BenchmarkDotNet stage suite)." };
        var throughputOnly = new Option<bool>("--throughput-only") { Description = "Only the backlog runs (passthrough, processor, hand-written consumer): no shadow, open-loop or stage measurements; for comparing settings (--set) in a few minutes." };
        var set = new Option<string[]>("--set") { Description = "A processor setting as Section:Key=Value for the measured `serve` (repeatable), e.g. --set Pipeline:MaxBatchSize=512.", AllowMultipleArgumentsPerToken = false };
        var quick = new Option<bool>("--quick") { Description = "Shorter runs everywhere (a smoke test of the suite, not figures to publish)." };
        var command = new Command("bench",
            "Benchmark suite: processor vs a raw Confluent.Kafka passthrough (throughput ratio, CPU-µs per event) and vs a hand-written " +
            "per-event consumer of the same features and model, open-loop " +
            "sustainable rates (open loop, the generator as its own process), event-to-prediction latency at 25/50/80 % of the processor's, and BenchmarkDotNet stage micro-benchmarks " +
            "(batcher, offsets, assembly, wire format, drift, Redis pipelined vs per-key, ONNX Runtime pooled vs allocating). " +
            "Writes <output>.md and <output>.json.")
        {
            events, partitions, step, kafka, registry, redis, output, skipMicro, throughputOnly, quick, set,
        };
        command.SetAction((parse, ct) => BenchRunner.RunAsync(new BenchSettings(
            parse.GetValue(events), parse.GetValue(partitions), parse.GetValue(step),
            parse.GetValue(kafka), parse.GetValue(registry), parse.GetValue(redis) ?? Environment.GetEnvironmentVariable("REDIS_URL"),
            parse.GetValue(output)!, parse.GetValue(skipMicro), parse.GetValue(quick), parse.GetValue(set) ?? [], ThroughputOnly: parse.GetValue(throughputOnly)), ct));
        command.Subcommands.Add(Passthrough());
        command.Subcommands.Add(BenchGenerate.Create());
        command.Subcommands.Add(BenchBaseline.Create());
        command.Subcommands.Add(ModelBenchCommand.Create());
        command.Subcommands.Add(BenchVariants.Create());
        return command;
    }

    /// <summary>
    /// The baseline: raw Confluent.Kafka consuming the input and producing every record unchanged to
    /// another topic, with the processor's consumer and producer defaults. Runs until SIGTERM.
    /// </summary>
    private static Command Passthrough()
    {
        var bootstrap = new Option<string>("--bootstrap-servers") { Required = true, Description = "Kafka bootstrap servers." };
        var input = new Option<string>("--input-topic") { Required = true, Description = "Topic to consume." };
        var output = new Option<string>("--output-topic") { Required = true, Description = "Topic to produce to." };
        var group = new Option<string>("--group-id") { Required = true, Description = "Consumer group." };
        var command = new Command("passthrough", "Baseline for `bench`: consume the input and produce each record unchanged (raw Confluent.Kafka), until SIGTERM.")
        {
            bootstrap, input, output, group,
        };
        command.SetAction((parse, ct) => Task.Run(() => RunPassthrough(parse.GetValue(bootstrap)!, parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(group)!, ct), CancellationToken.None));
        return command;
    }

    private static int RunPassthrough(string bootstrap, string input, string output, string group, CancellationToken ct)
    {
        // The processor's defaults (StreamProcessor): idempotent producer, linger 5 ms, LZ4; the consumer
        // stores offsets only for records whose copies were delivered.
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5, CompressionType = CompressionType.Lz4,
            ClientId = "streaminference-bench-passthrough",
        }).Build();
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrap, GroupId = group, AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = true, EnableAutoOffsetStore = false, ClientId = "streaminference-bench-passthrough",
        }).SetPartitionsAssignedHandler((_, list) => Console.Error.WriteLine($"Assigned {list.Count} partition(s)")).Build();
        consumer.Subscribe(input);
        Console.Error.WriteLine($"passthrough {input} → {output}");
        var failed = 0;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var r = consumer.Consume(ct);
                if (r is null || r.IsPartitionEOF) continue;
                var offset = r.TopicPartitionOffset;
                ProducerQueue.Produce(producer, output, new Message<byte[], byte[]> { Key = r.Message.Key, Value = r.Message.Value }, report =>
                {
                    if (report.Error.IsError) Interlocked.Increment(ref failed);
                    else consumer.StoreOffset(new TopicPartitionOffset(offset.TopicPartition, offset.Offset + 1));
                });
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        producer.Flush(TimeSpan.FromSeconds(10));
        consumer.Close();
        if (failed > 0) Console.Error.WriteLine($"passthrough: {failed} produce error(s)");
        return failed == 0 ? 0 : 1;
    }
}
