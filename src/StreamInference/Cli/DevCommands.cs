using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Batch.Training;
using StreamInference.Core.Features;
using StreamInference.DevServices;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Cli;

public static class DevCommands
{
    private const string DefaultReaderSchema = "schemas/payment-event.avsc";
    private const string DefaultFeatures = "schemas/features/card_payments.yaml";

    public static Command DevUp()
    {
        var brokers = new Option<int>("--brokers") { Description = "Brokers in the embedded Kafka-protocol cluster.", DefaultValueFactory = _ => 3 };
        var partitions = new Option<int>("--partitions") { Description = "Partitions of the input and prediction topics.", DefaultValueFactory = _ => 6 };
        var registryPort = new Option<int>("--registry-port") { Description = "Port of the dev schema registry (0 = any free port).", DefaultValueFactory = _ => 0 };
        var seed = new Option<bool>("--seed-features") { Description = "Warm-start Redis: lookups and window state computed by the batch path from a synthetic history ending now.", DefaultValueFactory = _ => true };
        var up = new Command("up", "Start an embedded Kafka-protocol cluster, a dev schema registry and Garnet (Redis protocol); " +
                                   "print one JSON line {\"bootstrapServers\",\"schemaRegistryUrl\",\"redis\"}; run until SIGINT/SIGTERM.")
        {
            brokers, partitions, registryPort, seed,
        };
        up.SetAction(async (parse, ct) =>
        {
            var p = parse.GetValue(partitions);
            await using var env = await DevEnvironment.StartAsync(new DevEnvironmentOptions
            {
                Brokers = parse.GetValue(brokers),
                RegistryPort = parse.GetValue(registryPort),
                Topics = new() { ["payments"] = p, ["predictions"] = p, ["payments.dlq"] = 1, ["drift-reports"] = 1 },
            }, ct).ConfigureAwait(false);
            if (parse.GetValue(seed))
            {
                using var redis = await ConnectionMultiplexer.ConnectAsync(env.Endpoints.Redis).ConfigureAwait(false);
                await WarmStart.MaterializeAsync(redis.GetDatabase(), FeatureSetLoader.LoadFile(PathResolver.Resolve(DefaultFeatures)), new ProduceOptions().WorldSeed, cancellationToken: ct).ConfigureAwait(false);
            }
            Console.Out.WriteLine(JsonSerializer.Serialize(env.Endpoints, CliJson.Default.DevEndpoints));
            Console.Out.Flush();
            await Console.Error.WriteLineAsync("Dev services running (topics payments, predictions, payments.dlq). Ctrl+C to stop.").ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            return 0;
        });
        return new Command("dev", "Embedded development services.") { up };
    }

    public static Command Produce()
    {
        var bootstrap = new Option<string?>("--bootstrap-servers") { Description = "Kafka bootstrap servers (default: env KAFKA_BOOTSTRAP_SERVERS)." };
        var registry = new Option<string?>("--schema-registry-url") { Description = "Schema registry URL (default: env SCHEMA_REGISTRY_URL)." };
        var redis = new Option<string?>("--redis") { Description = "Also warm-start this Redis (lookups and window state from a synthetic history; default: env REDIS_URL, if set)." };
        var topic = new Option<string>("--topic") { Description = "Topic to produce to.", DefaultValueFactory = _ => "payments" };
        var events = new Option<int>("--events") { Description = "Number of events.", DefaultValueFactory = _ => 10_000 };
        var rate = new Option<double>("--rate") { Description = "Events per second (0 = as fast as possible).", DefaultValueFactory = _ => 0 };
        var badRate = new Option<double>("--bad-rate") { Description = "Fraction of deliberately malformed records (0..1).", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the event stream (the cards and merchants are always the example training world's, as in dev history).", DefaultValueFactory = _ => 7 };
        var driftAt = new Option<int?>("--drift-at") { Description = "Shift the synthetic world from event K on (higher amounts, more online payments)." };
        var schema = new Option<string>("--schema") { Description = "Writer schema (.avsc).", DefaultValueFactory = _ => DefaultReaderSchema };
        var labelsTopic = new Option<string?>("--labels-topic")
        {
            Description = "Also publish each event's ground truth (schemas/label.avsc) to this topic, after a delay drawn from the feature set's " +
                          "label.knownAfter: most within it, 5 % up to three times later, 2 % never. The label time is event time + delay.",
        };
        var labelTimeScale = new Option<double>("--label-time-scale")
        {
            Description = "Wall seconds per second of label delay (default 1/86400: a day of delay is published after a second).",
            DefaultValueFactory = _ => 1.0 / 86_400,
        };
        var command = new Command("produce", "Publish synthetic card-payment events (Avro, Confluent wire format, registered under <topic>-value).")
        {
            bootstrap, registry, redis, topic, events, rate, badRate, seed, schema, driftAt, labelsTopic, labelTimeScale,
        };
        command.SetAction(async (parse, ct) =>
        {
            var servers = parse.GetValue(bootstrap) ?? Environment.GetEnvironmentVariable("KAFKA_BOOTSTRAP_SERVERS");
            var url = parse.GetValue(registry) ?? Environment.GetEnvironmentVariable("SCHEMA_REGISTRY_URL");
            if (string.IsNullOrEmpty(servers) || string.IsNullOrEmpty(url))
            {
                await Console.Error.WriteLineAsync("produce needs --bootstrap-servers and --schema-registry-url (or KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL).").ConfigureAwait(false);
                return 2;
            }
            var n = parse.GetValue(events);
            var bad = parse.GetValue(badRate);
            if (n < 0 || bad is < 0 or > 1 || parse.GetValue(rate) < 0 || parse.GetValue(labelTimeScale) is < 0 or > 1)
            {
                await Console.Error.WriteLineAsync("--events and --rate must be >= 0, --bad-rate within 0..1, --label-time-scale within 0..1.").ConfigureAwait(false);
                return 2;
            }
            var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(DefaultFeatures));
            var options = new ProduceOptions
            {
                Topic = parse.GetValue(topic)!, Events = n, Rate = parse.GetValue(rate), BadRate = bad, Seed = parse.GetValue(seed), DriftAt = parse.GetValue(driftAt),
                LabelsTopic = parse.GetValue(labelsTopic), LabelTimeScale = parse.GetValue(labelTimeScale),
                LabelKnownAfterMs = plan.LabelKnownAfterMs > 0 ? plan.LabelKnownAfterMs : 86_400_000,
            };
            var redisConfig = parse.GetValue(redis) ?? Environment.GetEnvironmentVariable("REDIS_URL");
            if (!string.IsNullOrEmpty(redisConfig))
            {
                using var mux = await ConnectionMultiplexer.ConnectAsync(RedisUrl.ToConfiguration(redisConfig)).ConfigureAwait(false);
                var warm = await WarmStart.MaterializeAsync(mux.GetDatabase(), plan, options.WorldSeed, cancellationToken: ct).ConfigureAwait(false);
                await Console.Error.WriteLineAsync($"Wrote {warm.LookupHashes} lookup hashes and the windows of {warm.WindowEntities} entities to Redis.").ConfigureAwait(false);
            }
            using var client = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = url });
            var writer = (Avro.RecordSchema)AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve(parse.GetValue(schema)!), ct).ConfigureAwait(false));
            var summary = await SyntheticPaymentProducer.ProduceAsync(servers, client, writer, options,
                i => Console.Error.Write($"\rproduced {i:N0}/{n:N0}"), ct).ConfigureAwait(false);
            Console.Error.WriteLine();
            Console.Out.WriteLine(JsonSerializer.Serialize(new ProduceResult(summary.Produced, summary.Malformed, summary.Failed,
                Math.Round(summary.Elapsed.TotalSeconds, 3), summary.Labels), CliJson.Default.ProduceResult));
            return summary.Failed == 0 ? 0 : 1;
        });
        return command;
    }

    public static Command Demo()
    {
        var events = new Option<int?>("--events") { Description = "Stop after this many events and print a final JSON line (default: run until Ctrl+C)." };
        var rate = new Option<double>("--rate") { Description = "Events per second from the synthetic producer (0 = as fast as possible).", DefaultValueFactory = _ => 5000 };
        var badRate = new Option<double>("--bad-rate") { Description = "Fraction of malformed records, to show the dead-letter path.", DefaultValueFactory = _ => 0.005 };
        var batch = new Option<int>("--max-batch") { Description = "Pipeline:MaxBatchSize.", DefaultValueFactory = _ => 256 };
        var partitions = new Option<int>("--partitions") { Description = "Partitions of the input topic.", DefaultValueFactory = _ => 6 };
        var quiet = new Option<bool>("--quiet") { Description = "No live view; only the final JSON line." };
        var driftAt = new Option<int?>("--drift-at") { Description = "Shift the synthetic world at event K (higher amounts, more online payments) to show drift detection." };
        var driftWindow = new Option<int>("--drift-window") { Description = "Drift:WindowEvents: events per drift window.", DefaultValueFactory = _ => 2000 };
        var startTime = new Option<string?>("--start-time")
        {
            Description = "Simulate another time of day: event times start here (HH:mm, UTC today, or an ISO-8601 time) and run on with the clock; " +
                          "the warm-start history ends there too. Default: now.",
        };
        var model = new Option<string?>("--model")
        {
            Description = "The model served, name or name@version, from the models/ repository (Model:Name, Model:Version) [default: fraud-gbm@latest].",
        };
        var challenger = new Option<string?>("--challenger")
        {
            Description = "Serve a deployment: the model above as champion and this one (name@version) as a shadow compared live " +
                          "(agreement, score differences, rank correlation per 2,000 events) and as the fallback tier under load.",
        };
        var noLabels = new Option<bool>("--no-labels")
        {
            Description = "Leave out ground truth: no labels topic, no live evaluation and no backtest (by default each event's label follows " +
                          "after a delay from label.knownAfter, a day of it passing in a second, and the live AUC is shown and compared with a replay).",
        };
        var spike = new Option<bool>("--spike") { Description = "With a bounded --events and a --rate: the middle third comes at 5× the rate, to show the fallback tier take over and hand back." };
        var command = new Command("demo", "Dev services + synthetic upstream producer + processor + prediction reader, with a live view. " +
                                          "Uses KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL / REDIS_URL when set, embedded services otherwise.")
        {
            events, rate, badRate, batch, partitions, quiet, driftAt, driftWindow, startTime, model, challenger, spike, noLabels,
        };
        command.SetAction(async (parse, ct) =>
        {
            DateTimeOffset? start = null;
            if (parse.GetValue(startTime) is { } text)
            {
                if (TimeOnly.TryParseExact(text, ["HH:mm", "H:mm", "HH:mm:ss"], CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
                    start = new DateTimeOffset(DateTime.UtcNow.Date + time.ToTimeSpan(), TimeSpan.Zero);
                else if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
                    start = at.ToUniversalTime();
                else
                {
                    await Console.Error.WriteLineAsync($"demo: --start-time '{text}' is neither HH:mm (UTC) nor an ISO-8601 time.").ConfigureAwait(false);
                    return 2;
                }
            }
            return await DemoRunner.RunAsync(new DemoSettings(parse.GetValue(events), parse.GetValue(rate), parse.GetValue(badRate),
                parse.GetValue(batch), parse.GetValue(partitions), parse.GetValue(quiet), parse.GetValue(driftAt), parse.GetValue(driftWindow), start,
                parse.GetValue(model), parse.GetValue(challenger), parse.GetValue(spike), !parse.GetValue(noLabels)), ct).ConfigureAwait(false);
        });
        return command;
    }
}

public sealed record DemoSettings(int? Events, double Rate, double BadRate, int MaxBatch, int Partitions, bool Quiet, int? DriftAt = null, int DriftWindow = 2000,
    DateTimeOffset? StartTime = null, string? Model = null, string? Challenger = null, bool Spike = false, bool Labels = true);

public sealed record ProduceResult(int Produced, int Malformed, int Failed, double ElapsedSeconds, int Labels = 0);

public sealed record DemoResult(
    int Produced, int Predicted, int DeadLettered, int Lost, long Duplicates, int Mismatched,
    double ElapsedSeconds, double EventsPerSecond, long Batches, double MeanBatchSize,
    double LatencyP50Ms, double LatencyP95Ms, double LatencyP99Ms,
    Dictionary<string, int> DeadLettersByReason, string Model, long DriftWindows, string[] DriftAlertsInLastWindow,
    DemoDrift Drift, DemoDeployment? Deployment = null, DemoEvaluation? Evaluation = null);

/// <summary>The label join's outcomes and each model's live figures beside the replay backtest's AUC on the same events.</summary>
public sealed record DemoEvaluation(int Labels, long Joined, long Early, long Late, long DuplicateLabels, DemoModelEvaluation[] Models);

/// <param name="MaxScoreDifference">The largest |live score − replayed score| over those events: how exactly the backtest reproduces the live features.</param>
public sealed record DemoModelEvaluation(string Model, string Arm, int Labelled, int Positives, double LiveAuc, double? BacktestAuc, double? Difference,
    double MaxScoreDifference, double Precision, double Recall, double LogLoss, double Brier);

/// <summary>With --challenger: the live comparison's last window, and the serving tier's switches.</summary>
public sealed record DemoDeployment(string Champion, string Challenger, int ComparisonWindows, double LastAgreement, double LastRankCorrelation,
    int TierSwitches, long FallbackPredictions, string[] Switches);

/// <summary>The drift verdict of a demo run: windows by their highest severity, and the last one's.</summary>
public sealed record DemoDrift(string LastWindow, long OkWindows, long WarnWindows, long AlertWindows, string[] WarningsInLastWindow, string StartTime);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(DevEndpoints))]
[JsonSerializable(typeof(ProduceResult))]
[JsonSerializable(typeof(DemoResult))]
[JsonSerializable(typeof(DemoDrift))]
[JsonSerializable(typeof(DemoDeployment))]
[JsonSerializable(typeof(DemoEvaluation))]
public sealed partial class CliJson : JsonSerializerContext;
