using StreamInference.Infrastructure.Onnx;
using StreamInference.Core.Deployment;
using StreamInference.Core.Drift;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using StackExchange.Redis;
using StreamInference.Batch.Synthetic;
using StreamInference.Benchmarks;
using StreamInference.Core.Features;
using StreamInference.DevServices.Kafka;
using StreamInference.DevServices.Processes;
using StreamInference.DevServices.Redis;
using StreamInference.DevServices.SchemaRegistry;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Cli;

public sealed record BenchSettings(int Events, int Partitions, double LatencySeconds, string? BootstrapServers, string? SchemaRegistryUrl,
    string? Redis, string Output, bool SkipMicro, bool Quick, string[] ProcessorSettings, bool SkipShadow = false, bool ThroughputOnly = false);

/// <summary>
/// The benchmark suite. Kafka (embedded Kafka-protocol cluster or the given brokers), the registry and
/// Redis stay in this process or outside it; the processor (<c>serve</c>), the passthrough baseline
/// (<c>bench passthrough</c>) and the hand-written baseline (<c>bench baseline</c>) run as child processes of this same binary, one after the other, so each
/// one's CPU time is its own. Throughput is taken from the output topics' high watermarks between a
/// quarter of the output (after warm-up) and the last record; latency from the prediction's event time (the open-loop producer
/// stamps each event with the moment it produces it) to the moment a reader in this process receives
/// the prediction.
/// </summary>
public static class BenchRunner
{
    private const int Seed = 7;
    private static readonly double[] LatencyFractions = [0.25, 0.50, 0.80];

    public static async Task<int> RunAsync(BenchSettings s, CancellationToken ct)
    {
        if (s.Events < 1000 || s.Partitions < 1 || s.LatencySeconds < 3)
        {
            await Console.Error.WriteLineAsync("bench: --events >= 1000, --partitions >= 1, --latency-seconds >= 3.").ConfigureAwait(false);
            return 2;
        }
        if (s.ProcessorSettings.Any(x => x.StartsWith("Kafka:Delivery=", StringComparison.OrdinalIgnoreCase) && !x.EndsWith("=AtLeastOnce", StringComparison.OrdinalIgnoreCase)))
        {
            // High watermarks count transaction markers and aborted records, and the reader would see
            // predictions before their commit: the figures would be wrong, not just different.
            await Console.Error.WriteLineAsync("bench: measures the at-least-once pipeline only (Kafka:Delivery=AtLeastOnce).").ConfigureAwait(false);
            return 2;
        }
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        var total = Stopwatch.StartNew();
        var runId = Guid.NewGuid().ToString("N")[..8];
        var events = s.Quick ? Math.Min(s.Events, 20_000) : s.Events;
        var stepSeconds = s.Quick ? Math.Min(s.LatencySeconds, 6) : s.LatencySeconds;
        // Unique per run: a Redis kept between runs must not take this run's records for redeliveries of the last one's.
        string Topic(string role) => $"bench-{role}-{runId}";
        var input = Topic("in");
        var passOut = Topic("passthrough");
        var baselineOut = Topic("baseline");
        var predictions = Topic("predictions");
        var dlq = Topic("dlq");
        var drift = Topic("drift");

        using var mock = s.BootstrapServers is null ? new MockKafkaCluster(3) : null;
        var bootstrap = s.BootstrapServers ?? mock!.BootstrapServers;
        await using var devRegistry = s.SchemaRegistryUrl is null ? await DevSchemaRegistry.StartAsync(0, cancellationToken: ct).ConfigureAwait(false) : null;
        var registryUrl = s.SchemaRegistryUrl ?? devRegistry!.Url;
        // The Redis users run: a local redis-server process when installed, Garnet in this process otherwise.
        using var redisServer = s.Redis is null ? await LocalRedisServer.TryStartAsync(cancellationToken: ct).ConfigureAwait(false) : null;
        using var garnet = s.Redis is null && redisServer is null ? new EmbeddedGarnet() : null;
        var redisConfig = redisServer?.Configuration ?? garnet?.Configuration ?? RedisUrl.ToConfiguration(s.Redis!);
        var redisKind = redisServer is not null ? $"redis-server {await ServerVersionAsync(redisConfig).ConfigureAwait(false)} (a local process, no persistence)"
            : garnet is not null ? "embedded Garnet (in the bench process; redis-server is not installed)" : "external Redis";

        Log($"bench: {events:N0} events, {s.Partitions} partitions; Kafka {(s.BootstrapServers ?? "embedded")}, registry {(s.SchemaRegistryUrl ?? "embedded")}, Redis {(s.Redis is null ? redisKind : Secrets.RedactText(s.Redis))}");
        var result = new BenchResult
        {
            Command = "dotnet run --project src/StreamInference -c Release -- bench" + (s.Quick ? " --quick" : "") + (s.ThroughputOnly ? " --throughput-only" : "") +
                      (events != 300_000 ? $" --events {events}" : "") + (s.Partitions != 12 ? $" --partitions {s.Partitions}" : "") +
                      string.Concat(s.ProcessorSettings.Select(x => " --set " + x)),
            Date = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
            Machine = MachineDescription(),
            Kafka = s.BootstrapServers is null ? "embedded librdkafka mock cluster (3 brokers, in the bench process)" : "external brokers",
            Redis = redisKind,
            Events = events,
            Partitions = s.Partitions,
        };
        var topicsDeleted = false;
        var stepTopics = new List<string>();
        async Task DeleteTopicsOnceAsync()
        {
            if (topicsDeleted || s.BootstrapServers is null) return;
            topicsDeleted = true;
            await DeleteTopicsAsync(bootstrap, [input, passOut, baselineOut, predictions, dlq, drift, .. stepTopics]).ConfigureAwait(false);
        }
        try
        {
            await CreateTopicsAsync(mock, bootstrap, s.Partitions, [input, passOut, baselineOut, predictions], [dlq, drift]).ConfigureAwait(false);
            var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve("schemas/features/card_payments.yaml"));
            using (var redis = await ConnectionMultiplexer.ConnectAsync(redisConfig).ConfigureAwait(false))
            {
                Log("warm start: synthetic history → lookups and window state in Redis (the batch path's code) ...");
                await WarmStart.MaterializeAsync(redis.GetDatabase(), plan, cancellationToken: ct).ConfigureAwait(false);
            }
            using var registry = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = registryUrl });
            var writer = (Avro.RecordSchema)AvroSchema.Parse(await File.ReadAllTextAsync(PathResolver.Resolve("schemas/payment-event.avsc"), ct).ConfigureAwait(false));
            Log($"producing {events:N0} events to {input} ...");
            var produced = await SyntheticPaymentProducer.ProduceAsync(bootstrap, registry, writer,
                new ProduceOptions { Topic = input, Events = events, Seed = Seed }, null, ct).ConfigureAwait(false);
            if (produced.Failed > 0) throw new InvalidOperationException($"{produced.Failed} input events were not delivered.");

            // 1. Passthrough baseline.
            Log("passthrough baseline: raw Confluent.Kafka consume → produce ...");
            using (var pass = Child("passthrough", ["bench", "passthrough", "--bootstrap-servers", bootstrap, "--input-topic", input, "--output-topic", passOut, "--group-id", $"bench-passthrough-{runId}"]))
            {
                var run = await MeasureAsync(pass, bootstrap, [passOut], events, ct).ConfigureAwait(false);
                result.Passthrough = run;
                Log($"  {run.EventsPerSecond:N0} events/s, {run.CpuMicrosPerEvent:N2} CPU-µs/event");
                await pass.StopAsync(StopTimeout).ConfigureAwait(false);
            }

            // 2. The processor on the same input, then 3. open-loop latency steps against it.
            Log("processor (serve): full pipeline with the example model ...");
            ChildProcess Processor(string from, string to, string group, int port, string? deadLetters = null) => Child("processor", ["serve", .. ChildProcess.SetArguments([
                $"Kafka:BootstrapServers={bootstrap}", $"Kafka:GroupId={group}",
                $"Kafka:InputTopic={from}", $"Kafka:OutputTopic={to}", $"Kafka:DeadLetterTopic={deadLetters ?? dlq}",
                $"SchemaRegistry:Url={registryUrl}", $"Redis:Configuration={redisConfig}", $"Drift:Topic={drift}",
                $"Http:Port={port}", "Http:Host=127.0.0.1", "Logging:LogLevel:Default=Warning",
                .. FetchWait(mock), .. s.ProcessorSettings])]);
            var metricsPort = EmbeddedGarnet.FreePort();
            var proc = new ThroughputRun();
            using (var processor = Processor(input, predictions, $"bench-processor-{runId}", metricsPort))
            {
                proc = await MeasureAsync(processor, bootstrap, [predictions, dlq], events, ct).ConfigureAwait(false);
                result.Stages.AddRange(await StageBreakdownAsync(metricsPort, ct).ConfigureAwait(false));
                await processor.StopAsync(StopTimeout).ConfigureAwait(false);
            }
            result.Processor = proc;
            foreach (var st in result.Stages) Log($"  {st.Name}: {st.Value}");
            Log($"  {proc.EventsPerSecond:N0} events/s, {proc.CpuMicrosPerEvent:N2} CPU-µs/event, ratio {proc.EventsPerSecond / result.Passthrough.EventsPerSecond:N3}");

            // 2a. The consumer a team would write by hand (bench baseline) on the same input and the same model. It is
            // far slower, so it is measured over a fixed span after a warm-up instead of to the last event. It adds the
            // input's events to the Redis windows a second time (the processor applied them already; the baseline has no
            // redelivery check): bucket counts change, the work per event does not. Later runs read fresh topics with
            // freshly started processors, which read each entity's state from Redis anew (the baseline's writes also
            // replace the version token that a cached state would be checked against).
            Log("baseline: hand-written consumer (Confluent Avro deserializer, per-event Redis reads and writes, one ONNX Runtime run per event) ...");
            using (var baseline = Child("baseline", ["bench", "baseline", "--bootstrap-servers", bootstrap, "--input-topic", input, "--output-topic", baselineOut,
                       "--group-id", $"bench-baseline-{runId}", "--schema-registry-url", registryUrl, "--redis", redisConfig, "--model-dir", ServedModel(s.ProcessorSettings)]))
            {
                var span = s.Quick ? (WarmUp: TimeSpan.FromSeconds(3), Span: TimeSpan.FromSeconds(10)) : (WarmUp: TimeSpan.FromSeconds(5), Span: TimeSpan.FromSeconds(20));
                var run = await MeasureAsync(baseline, bootstrap, [baselineOut], events, ct, span).ConfigureAwait(false);
                result.Baseline = run;
                Log($"  {run.EventsPerSecond:N0} events/s, {run.CpuMicrosPerEvent:N2} CPU-µs/event over {run.Seconds:N1} s, processor ÷ baseline {proc.EventsPerSecond / run.EventsPerSecond:N1}×");
                await baseline.StopAsync(StopTimeout).ConfigureAwait(false);
            }

            // 2b. A deployment whose shadow costs what the champion costs (a copy of it under another name) against the
            // same deployment without the shadow. Each run reads its own input of new events (same world, another
            // seed): a second pass over the first input would find its window updates already applied and skip them.
            if (!s.SkipShadow && !s.ThroughputOnly)
            {
                var repository = ShadowRepository(s.ProcessorSettings, runId);
                try
                {
                    async Task<ThroughputRun> DeploymentRunAsync(string name, string deploymentFile, int seed)
                    {
                        var (runIn, runOut, runDlq, runShadow) = (Topic($"in-{name}"), Topic($"predictions-{name}"), Topic($"dlq-{name}"), Topic($"shadow-{name}"));
                        stepTopics.AddRange([runIn, runOut, runDlq, runShadow]);
                        await CreateTopicsAsync(mock, bootstrap, s.Partitions, [runIn, runOut, runShadow], [runDlq]).ConfigureAwait(false);
                        var made = await SyntheticPaymentProducer.ProduceAsync(bootstrap, registry, writer,
                            new ProduceOptions { Topic = runIn, Events = events, Seed = seed }, null, ct).ConfigureAwait(false);
                        if (made.Failed > 0) throw new InvalidOperationException($"{made.Failed} input events were not delivered.");
                        using var processor = Child("processor", ["serve", .. ChildProcess.SetArguments([
                            $"Kafka:BootstrapServers={bootstrap}", $"Kafka:GroupId=bench-{name}-{runId}",
                            $"Kafka:InputTopic={runIn}", $"Kafka:OutputTopic={runOut}", $"Kafka:DeadLetterTopic={runDlq}", $"Kafka:ShadowTopic={runShadow}",
                            $"SchemaRegistry:Url={registryUrl}", $"Redis:Configuration={redisConfig}", $"Drift:Topic={drift}",
                            $"Http:Port={EmbeddedGarnet.FreePort()}", "Http:Host=127.0.0.1", "Logging:LogLevel:Default=Warning",
                            .. FetchWait(mock), .. s.ProcessorSettings,
                            $"Model:Repository={repository.Directory}", $"Model:Deployment={deploymentFile}"])]);
                        var run = await MeasureAsync(processor, bootstrap, [runOut, runDlq], events, ct).ConfigureAwait(false);
                        await processor.StopAsync(StopTimeout).ConfigureAwait(false);
                        return run;
                    }
                    Log("deployment, champion alone (baseline for the shadow) ...");
                    var alone = await DeploymentRunAsync("champion", repository.ChampionOnly, Seed + 11).ConfigureAwait(false);
                    Log($"  {alone.EventsPerSecond:N0} events/s, {alone.CpuMicrosPerEvent:N2} CPU-µs/event");
                    Log("deployment, champion with a shadow of its cost ...");
                    var shadowed = await DeploymentRunAsync("shadowed", repository.WithShadow, Seed + 13).ConfigureAwait(false);
                    (result.ChampionAlone, result.WithShadow) = (alone, shadowed);
                    Log($"  {shadowed.EventsPerSecond:N0} events/s, {shadowed.CpuMicrosPerEvent:N2} CPU-µs/event, ÷ without the shadow {shadowed.EventsPerSecond / alone.EventsPerSecond:N3}");
                }
                finally
                {
                    Directory.Delete(repository.Directory, recursive: true);
                }
            }

            if (!s.ThroughputOnly)
            {
                // 3. Sustainable throughput of the processor and of the passthrough under the same conditions (the generator
                // as its own process, fresh topics and a fresh consumer per step), then latency at 25/50/80 % of the
                // processor's. Fresh topics because the embedded cluster looks a fetch offset up by walking a partition's
                // message sets from the first: topics written in small open-loop batches make it, not the consumer, the
                // slow part as a step goes on.
                var loop = new OpenLoop(bootstrap, registryUrl, mock, s.Partitions, stepSeconds, Topic, stepTopics, Log);
                var ports = new Dictionary<ChildProcess, int>();
                var processorTarget = new LoadTarget("processor",
                    (from, to, dead, n) =>
                    {
                        var port = EmbeddedGarnet.FreePort();
                        var child = Processor(from, to, $"bench-step{n}-{runId}", port, dead);
                        ports[child] = port;
                        return child;
                    },
                    (child, token) => WaitAssignedAsync(child, ports[child], token), Predictions: true);
                var passthroughTarget = new LoadTarget("passthrough",
                    (from, to, _, n) => Child("passthrough", ["bench", "passthrough", "--bootstrap-servers", bootstrap, "--input-topic", from, "--output-topic", to, "--group-id", $"bench-passthrough-step{n}-{runId}"]),
                    (child, token) => child.WaitAssignedAsync(TimeSpan.FromSeconds(90), token), Predictions: false);
                var probes = s.Quick ? 2 : 4;
                Log($"sustainable rate, processor: {probes} open-loop probes of {stepSeconds:N0} s (the generator in its own process) ...");
                (result.ProcessorSustainable, var processorProbes) = await loop.SustainableRateAsync(processorTarget, proc.EventsPerSecond, probes, ct).ConfigureAwait(false);
                Log($"sustainable rate, passthrough: {probes} probes ...");
                (result.PassthroughSustainable, var passthroughProbes) = await loop.SustainableRateAsync(passthroughTarget, result.Passthrough.EventsPerSecond, probes, ct).ConfigureAwait(false);
                result.Search.AddRange([.. processorProbes, .. passthroughProbes]);
                Log($"  sustainable: processor {result.ProcessorSustainable:N0}/s, passthrough {result.PassthroughSustainable:N0}/s, ratio {result.SustainableRatio:0.000}");

                var reference = result.ProcessorSustainable > 0 ? result.ProcessorSustainable : proc.EventsPerSecond;
                foreach (var fraction in LatencyFractions)
                {
                    var rate = Math.Round(fraction * reference);
                    Log($"latency at {fraction:P0} of the {(result.ProcessorSustainable > 0 ? "sustainable" : "backlog")} rate: open loop at {rate:N0} events/s for {stepSeconds:N0} s ...");
                    var step = await loop.StepAsync(processorTarget, rate, ct).ConfigureAwait(false);
                    step.Fraction = fraction;
                    result.Latency.Add(step);
                    Log($"  p50 {step.P50Ms:N1} ms, p95 {step.P95Ms:N1} ms, p99 {step.P99Ms:N1} ms (achieved {step.AchievedRate:N0}/s, {step.Samples:N0} samples, {step.Missing} missing, backlog at the end {step.BacklogAtEnd:N0})");
                }
            }
            await DeleteTopicsOnceAsync().ConfigureAwait(false);

            // 4–6. Stage micro-benchmarks (BenchmarkDotNet, in process).
            if (!s.SkipMicro && !s.ThroughputOnly)
            {
                Log("stage micro-benchmarks (BenchmarkDotNet) ...");
                var artifacts = Path.Combine(Path.GetTempPath(), "streaminference-bench-" + runId);
                result.Micro.AddRange(MicroSuite.Run(new MicroSuiteOptions(redisConfig, artifacts, s.Quick), Console.Error));
            }
        }
        finally
        {
            await DeleteTopicsOnceAsync().ConfigureAwait(false);
        }

        result.DurationSeconds = Math.Round(total.Elapsed.TotalSeconds, 1);
        result.Goals.AddRange(BenchReport.Goals(result));
        var output = Path.GetFullPath(s.Output);
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        await File.WriteAllTextAsync(output + ".json", BenchReport.Json(result), ct).ConfigureAwait(false);
        await File.WriteAllTextAsync(output + ".md", BenchReport.Markdown(result), ct).ConfigureAwait(false);
        Log($"wrote {output}.md and {output}.json in {total.Elapsed.TotalMinutes:N1} min");
        foreach (var g in result.Goals) Log($"  {(g.Met ? "met    " : "not met")} {g.Name}: {g.Measured} (goal {g.Target})");
        return 0;
    }

    private static void Log(string line) => Console.Error.WriteLine(line);

    private static async Task<string> ServerVersionAsync(string configuration)
    {
        using var redis = await ConnectionMultiplexer.ConnectAsync(configuration).ConfigureAwait(false);
        return redis.GetServers().FirstOrDefault()?.Version.ToString() ?? "?";
    }

    /// <summary>
    /// A temporary model repository holding the champion the settings name (Model:Repository, Model:Name, Model:Version)
    /// and a copy of it as &lt;name&gt;-shadow (same graph, same cost), with a deployment that shadows the champion with the copy.
    /// </summary>
    private static (string Directory, string ChampionOnly, string WithShadow) ShadowRepository(string[] settings, string runId)
    {
        var source = ServedModel(settings);
        var manifest = ModelManifest.Load(Path.Combine(source, "manifest.json"));
        var root = Path.Combine(Path.GetTempPath(), $"streaminference-bench-models-{runId}");
        void Copy(string name) => ModelRepository.CopyVersion(source, root, name);   // the shadow copy has no profile: its drift is not what is measured
        Copy(manifest.Name);
        Copy(manifest.Name + "-shadow");
        var champion = new ModelRef(manifest.Name, manifest.Version);
        var (alone, shadowed) = (Path.Combine(root, "champion-only.yaml"), Path.Combine(root, "with-shadow.yaml"));
        new DeploymentSpec(1, champion, [], null, null).Save(alone);
        new DeploymentSpec(1, champion, [new ShadowSpec(new ModelRef(manifest.Name + "-shadow", manifest.Version), 1)], null, null).Save(shadowed);
        return (root, alone, shadowed);
    }

    /// <summary>The version directory of the model the settings name (Model:Repository, Model:Name, Model:Version; else the defaults).</summary>
    private static string ServedModel(string[] settings)
    {
        string Setting(string key, string fallback) =>
            settings.LastOrDefault(x => x.StartsWith(key + "=", StringComparison.OrdinalIgnoreCase)) is { } x ? x[(key.Length + 1)..] : fallback;
        var options = new ModelOptions();
        return ModelRepository.Resolve(PathResolver.Resolve(Setting("Model:Repository", options.Repository)), Setting("Model:Name", options.Name), Setting("Model:Version", options.Version));
    }

    /// <summary>How long a child has to drain and commit after SIGTERM before it is killed.</summary>
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(60);

    /// <summary>A child process of this same binary (apphost or <c>dotnet streaminference.dll</c>), its last output lines kept for errors.</summary>
    private static ChildProcess Child(string name, string[] args) =>
        ChildProcess.Start(CliCommand.CurrentProcess(), args, new ChildProcessOptions { Name = name, KeepLines = 40 });

    /// <summary>
    /// The embedded cluster answers a fetch that finds no data only after the consumer's whole
    /// fetch.wait.max.ms (500 ms by default) even when records arrive meanwhile — a real broker answers as
    /// soon as they do. Latency against it would measure that wait, so the processor gets a short one there.
    /// </summary>
    private static string[] FetchWait(MockKafkaCluster? mock) => mock is null ? [] : ["Kafka:Consumer:FetchWaitMaxMs=5"];

    /// <summary>Waits until the processor's /metrics shows assigned partitions.</summary>
    private static async Task WaitAssignedAsync(ChildProcess processor, int port, CancellationToken ct)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(90))
        {
            if (processor.HasExited) throw new InvalidOperationException($"processor exited with {processor.ExitCode}:{Environment.NewLine}{processor.Tail()}");
            try
            {
                var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), ct).ConfigureAwait(false);
                var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("streaminference_consumer_assigned_partitions ", StringComparison.Ordinal));
                if (line is not null && double.Parse(line.AsSpan(line.LastIndexOf(' ') + 1), CultureInfo.InvariantCulture) > 0) return;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
        throw new TimeoutException($"processor: no partitions assigned within 90 s:{Environment.NewLine}{processor.Tail()}");
    }

    /// <summary>Where the processor's time went during the throughput run, from its own /metrics.</summary>
    private static async Task<List<BenchFigure>> StageBreakdownAsync(int port, CancellationToken ct)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), ct).ConfigureAwait(false);
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            if (space > 0 && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) values[line[..space]] = v;
        }
        double Get(string name) => values.TryGetValue(name, out var v) ? v : double.NaN;
        var figures = new List<BenchFigure>();
        var batches = Get("streaminference_batch_size_count");
        figures.Add(new BenchFigure("batches", batches.ToString("N0", CultureInfo.InvariantCulture)));
        figures.Add(new BenchFigure("mean batch size", (Get("streaminference_batch_size_sum") / batches).ToString("N1", CultureInfo.InvariantCulture)));
        foreach (var (key, _) in values.Where(kv => kv.Key.StartsWith("streaminference_stage_duration_seconds_sum{", StringComparison.Ordinal)).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var labels = key[key.IndexOf('{', StringComparison.Ordinal)..];
            var count = Get("streaminference_stage_duration_seconds_count" + labels);
            figures.Add(new BenchFigure("mean stage time per batch " + labels.Trim('{', '}'), (1000 * values[key] / count).ToString("N2", CultureInfo.InvariantCulture) + " ms"));
        }
        var cached = Get("streaminference_window_state_updates_total{path=\"cached\"}");
        var read = Get("streaminference_window_state_updates_total{path=\"read\"}");
        figures.Add(new BenchFigure("entity window updates computed from the cached state", (cached / (cached + read)).ToString("P1", CultureInfo.InvariantCulture)));
        figures.Add(new BenchFigure("consumer stopped reading (input queue full)", Get("streaminference_consumer_backpressure_total").ToString("N0", CultureInfo.InvariantCulture)));
        figures.Add(new BenchFigure("consumer pauses (queue full longer than Kafka:PauseAfterMs)", Get("streaminference_consumer_pauses_total").ToString("N0", CultureInfo.InvariantCulture)));
        figures.Add(new BenchFigure("records fetched again after a resume and skipped", Get("streaminference_consumer_refetched_skipped_total").ToString("N0", CultureInfo.InvariantCulture)));
        return figures;
    }

    /// <summary>
    /// Waits until <paramref name="events"/> records are in <paramref name="outputs"/>; throughput over the
    /// span from the first quarter of the output to the last record, and the child's CPU time over the same span.
    /// With <paramref name="timed"/> (a child too slow to wait for all of it): the warm-up ends at the quarter or
    /// <c>WarmUp</c> after the first output record, whichever comes first, and the span at the last record or
    /// <c>Span</c> after the warm-up.
    /// </summary>
    private static async Task<ThroughputRun> MeasureAsync(ChildProcess child, string bootstrap, string[] outputs, int events, CancellationToken ct,
        (TimeSpan WarmUp, TimeSpan Span)? timed = null)
    {
        using var watermarks = new WatermarkCounter(bootstrap, outputs);
        var start = watermarks.Count();
        var clock = Stopwatch.StartNew();
        TimeSpan? firstOutputAt = null;
        TimeSpan? firstAt = null;
        TimeSpan firstCpu = default;
        long firstCount = 0;
        var lastProgress = (Count: 0L, At: TimeSpan.Zero);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (child.HasExited) throw new InvalidOperationException($"{child.Name} exited with {child.ExitCode}:{Environment.NewLine}{child.Tail()}");
            var count = watermarks.Count() - start;
            var cpu = child.CpuTime();
            var now = clock.Elapsed;
            if (count > 0) firstOutputAt ??= now;
            // The first quarter of the output is warm-up (JIT tiering, connections, the first fetches):
            // what a long-running process does is measured from there to the last record.
            if (firstAt is null && (count >= events / 4 || (timed is { } t && now - firstOutputAt >= t.WarmUp)))
            {
                firstAt = now;
                firstCpu = cpu;
                firstCount = count;
            }
            var spanOver = timed is { } timing && now - firstAt >= timing.Span;
            if ((count >= events || spanOver) && firstAt is { } from && now > from && count > firstCount)
            {
                var seconds = (now - from).TotalSeconds;
                var n = count - firstCount;
                return new ThroughputRun
                {
                    Events = count,
                    Seconds = Math.Round(seconds, 3),
                    EventsPerSecond = Math.Round(n / seconds, 1),
                    CpuMicrosPerEvent = Math.Round((cpu - firstCpu).TotalMicroseconds / n, 2),
                    CpuCoresBusy = Math.Round((cpu - firstCpu).TotalSeconds / seconds, 2),
                };
            }
            if (count >= events)
                throw new InvalidOperationException($"{child.Name}: the measured part of the run ({events - events / 4:N0} events) went by between two samples; raise --events.");
            if (count != lastProgress.Count) lastProgress = (count, now);
            else if (now - lastProgress.At > TimeSpan.FromSeconds(120))
                throw new TimeoutException($"{child.Name}: no output for 120 s at {count:N0} of {events:N0}:{Environment.NewLine}{child.Tail()}");
            await Task.Delay(10, ct).ConfigureAwait(false);
        }
    }

    internal static async Task CreateTopicsAsync(MockKafkaCluster? mock, string bootstrap, int partitions, string[] wide, string[] narrow)
    {
        if (mock is not null)
        {
            foreach (var t in wide) mock.CreateTopic(t, partitions, 3);
            foreach (var t in narrow) mock.CreateTopic(t, 1, 3);
            return;
        }
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
        await admin.CreateTopicsAsync(
            wide.Select(t => new TopicSpecification { Name = t, NumPartitions = partitions, ReplicationFactor = -1 })
                .Concat(narrow.Select(t => new TopicSpecification { Name = t, NumPartitions = 1, ReplicationFactor = -1 }))).ConfigureAwait(false);
    }

    private static async Task DeleteTopicsAsync(string bootstrap, string[] topics)
    {
        try
        {
            using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
            await admin.DeleteTopicsAsync(topics).ConfigureAwait(false);
        }
        catch (KafkaException e)
        {
            Log($"bench: could not delete the benchmark topics ({e.Message}); delete {string.Join(", ", topics)} by hand.");
        }
    }

    private static string MachineDescription()
    {
        var cpu = "";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "";
        }
        catch (IOException)
        {
        }
        return $"{Environment.ProcessorCount} cores{(cpu.Length > 0 ? " (" + cpu + ")" : "")}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
    }
}

/// <summary>Sum of the high watermarks of some topics' partitions.</summary>
internal sealed class WatermarkCounter : IDisposable
{
    private readonly IConsumer<byte[], byte[]> _consumer;
    private readonly List<TopicPartition> _partitions = [];

    public WatermarkCounter(string bootstrap, string[] topics)
    {
        _consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig { BootstrapServers = bootstrap, GroupId = "bench-watermarks", ClientId = "streaminference-bench-watermarks" }).Build();
        foreach (var topic in topics)
            _partitions.AddRange(TopicOffsets.PartitionsOf(_consumer, topic).Select(p => new TopicPartition(topic, p)));
    }

    public long Count() => _partitions.Sum(p => _consumer.QueryWatermarkOffsets(p, TimeSpan.FromSeconds(10)).High.Value);

    public void Dispose() => _consumer.Dispose();
}
