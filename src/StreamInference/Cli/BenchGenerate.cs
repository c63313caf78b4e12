using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using StreamInference.Batch.Synthetic;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Cli;

/// <summary>
/// The open-loop load generator of <c>bench</c>, in its own process so that its CPU is not the measured
/// process's nor the measuring one's: payment events produced on a fixed schedule at a rate, whatever the
/// consumer does, each stamped with the moment it is produced (its event time).
/// </summary>
public static class BenchGenerate
{
    /// <summary>The summary line it prints on stdout when done.</summary>
    public sealed record Summary(long Produced, long Failed, double Seconds, double AchievedRate, double MaxBehindMs);

    public static Command Create()
    {
        var bootstrap = new Option<string>("--bootstrap-servers") { Required = true, Description = "Kafka bootstrap servers." };
        var topic = new Option<string>("--topic") { Required = true, Description = "Topic to produce to (its value subject <topic>-value is registered)." };
        var registry = new Option<string>("--schema-registry-url") { Required = true, Description = "Schema registry URL." };
        var rate = new Option<double>("--rate") { Required = true, Description = "Events per second." };
        var seconds = new Option<double>("--seconds") { Description = "How long to produce.", DefaultValueFactory = _ => 10 };
        var seed = new Option<int>("--seed") { Description = "Seed of the synthetic payment stream.", DefaultValueFactory = _ => 8 };
        var command = new Command("generate",
            "Open-loop load for `bench`: produce synthetic payment events at --rate for --seconds on a fixed schedule, each stamped " +
            "with its production time as event time; prints a one-line JSON summary (produced, failed, achieved rate, how far it fell behind its schedule).")
        {
            bootstrap, topic, registry, rate, seconds, seed,
        };
        command.SetAction(async (parse, ct) =>
        {
            var (r, s) = (parse.GetValue(rate), parse.GetValue(seconds));
            if (!(r > 0) || !(s > 0))
            {
                await Console.Error.WriteLineAsync("bench generate: --rate and --seconds must be positive.").ConfigureAwait(false);
                return 2;
            }
            var summary = await RunAsync(parse.GetValue(bootstrap)!, parse.GetValue(topic)!, parse.GetValue(registry)!, r, s, parse.GetValue(seed), ct).ConfigureAwait(false);
            Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(summary, BenchJson.Default.GeneratorSummary).ReplaceLineEndings(""));
            return summary.Failed == 0 ? 0 : 1;
        });
        return command;
    }

    public static async Task<Summary> RunAsync(string bootstrap, string topic, string registryUrl, double rate, double seconds, int seed, CancellationToken ct)
    {
        var writer = (Avro.RecordSchema)AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve("schemas/payment-event.avsc"), ct).ConfigureAwait(false));
        using var registry = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = registryUrl });
        var schemaId = await registry.RegisterAsync($"{topic}-value", writer, ct).ConfigureAwait(false);
        var encode = SyntheticPaymentProducer.Encoder(writer, schemaId);
        var generator = new PaymentGenerator(streamSeed: seed);
        // Upstream producers' defaults: idempotent, librdkafka's 5 ms linger (so that batches are not needlessly small).
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5, ClientId = "streaminference-bench-generate",
        }).Build();
        long failed = 0;
        var total = (long)(rate * seconds);
        var maxBehind = TimeSpan.Zero;
        var clock = Stopwatch.StartNew();
        long produced = 0;
        for (; produced < total && !ct.IsCancellationRequested; produced++)
        {
            var due = TimeSpan.FromSeconds(produced / rate);
            var ahead = due - clock.Elapsed;
            if (ahead > TimeSpan.FromMilliseconds(1)) await Task.Delay(ahead, ct).ConfigureAwait(false);
            else if (-ahead > maxBehind) maxBehind = -ahead;
            var e = generator.Next(DateTimeOffset.UtcNow);
            var message = new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(e.CardId), Value = encode(e) };
            await ProducerQueue.ProduceAsync(producer, topic, message, report => { if (report.Error.IsError) Interlocked.Increment(ref failed); }, ct)
                .ConfigureAwait(false);
        }
        var elapsed = clock.Elapsed.TotalSeconds;
        producer.Flush(TimeSpan.FromSeconds(30));
        return new Summary(produced, Interlocked.Read(ref failed), Math.Round(elapsed, 3), Math.Round(produced / elapsed, 1), Math.Round(maxBehind.TotalMilliseconds, 1));
    }
}
