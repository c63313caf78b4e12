using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Confluent.Kafka;
using StreamInference.DevServices.Kafka;
using StreamInference.DevServices.Processes;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;

namespace StreamInference.Cli;

/// <summary>A consumer the open-loop steps measure: how to start it on a step's topics and how to know it is ready.</summary>
/// <param name="Start">input topic, output topic, dead-letter topic, step number → the running child.</param>
/// <param name="Predictions">Its output is predictions (event time readable): latency is measured, not only lag.</param>
internal sealed record LoadTarget(string Name, Func<string, string, string, int, ChildProcess> Start, Func<ChildProcess, CancellationToken, Task> WaitReadyAsync,
    bool Predictions);

/// <summary>
/// Open-loop steps and the search for the sustainable rate (Karimov et al., "Benchmarking Distributed Stream Data
/// Processing Systems", ICDE 2018: the highest load at which the system keeps up, latency and lag bounded, with the
/// load generator running). The generator is its own process (<c>bench generate</c>) producing on a fixed schedule;
/// each step gets fresh topics and a freshly started consumer, which the first <see cref="WarmUpSeconds"/> of load
/// warm up (JIT tiering, connections, caches) before the measured part begins. A step is sustained when the
/// generator kept its schedule (≥ 97 % of the rate) and the backlog — input high watermarks minus output high
/// watermarks — neither grew by more than half a second of input over the measured part (a consumer 5 % slower
/// than the input grows it that much in 10 s) nor ends above a second of input.
/// </summary>
internal sealed class OpenLoop(string bootstrap, string registryUrl, MockKafkaCluster? mock, int partitions, double seconds,
    Func<string, string> topic, List<string> createdTopics, Action<string> log)
{
    /// <summary>Achieved ÷ target rate below which the generator did not apply the load.</summary>
    public const double MinAchieved = 0.97;
    /// <summary>Growth of the backlog over the measured part, in seconds of input, above which the consumer did not keep up.</summary>
    public const double MaxBacklogGrowthSeconds = 0.5;
    /// <summary>Backlog at the end, in seconds of input, above which the lag is not bounded enough to call the rate sustained.</summary>
    public const double MaxBacklogSeconds = 1.0;
    /// <summary>Load before the measured part of a step: the fresh consumer's warm-up.</summary>
    public const double WarmUpSeconds = 5;
    private int _steps;

    /// <summary>
    /// Bisection between 20 % and 105 % of <paramref name="maximum"/> (the backlog throughput, which no open-loop
    /// load can exceed) with <paramref name="probes"/> steps; the result is the highest sustained rate probed (0 when none was).
    /// </summary>
    public async Task<(double Rate, List<LatencyStep> Steps)> SustainableRateAsync(LoadTarget target, double maximum, int probes, CancellationToken ct)
    {
        var (low, high) = (0.2 * maximum, 1.05 * maximum);
        var best = 0.0;
        var steps = new List<LatencyStep>();
        for (var i = 0; i < probes; i++)
        {
            var rate = Math.Round((low + high) / 2);
            var step = await StepAsync(target, rate, ct).ConfigureAwait(false);
            steps.Add(step);
            log($"  {target.Name} at {rate:N0}/s: {(step.Sustained ? "sustained" : "not sustained")} (generator {step.AchievedRate:N0}/s, backlog grew {step.BacklogGrowth / rate:0.00} s and ends at {step.BacklogAtEnd / rate:0.00} s of input, " +
                $"{step.CpuMicrosPerEvent:0.0} CPU-µs/event" +
                (target.Predictions ? $", p99 {step.P99Ms:0.0} ms)" : ")"));
            if (step.Sustained)
            {
                low = rate;
                best = Math.Max(best, rate);
            }
            else
            {
                high = rate;
            }
        }
        return (best, steps);
    }

    /// <summary>One step: fresh topics and consumer, the generator at <paramref name="rate"/> for the step's length, lag and latency measured.</summary>
    public async Task<LatencyStep> StepAsync(LoadTarget target, double rate, CancellationToken ct)
    {
        var n = ++_steps;
        var (input, output, dlq) = (topic($"{target.Name}{n}-in"), topic($"{target.Name}{n}-out"), topic($"{target.Name}{n}-dlq"));
        createdTopics.AddRange([input, output, dlq]);
        await BenchRunner.CreateTopicsAsync(mock, bootstrap, partitions, [input, output], [dlq]).ConfigureAwait(false);
        using var consumer = target.Start(input, output, dlq, n);
        await target.WaitReadyAsync(consumer, ct).ConfigureAwait(false);

        using var inputs = new WatermarkCounter(bootstrap, [input]);
        using var outputs = new WatermarkCounter(bootstrap, [output, dlq]);
        using var reader = target.Predictions ? new LatencyReader(bootstrap, output) : null;
        var clock = Stopwatch.StartNew();
        using var generator = ChildProcess.Start(CliCommand.CurrentProcess(),
            ["bench", "generate", "--bootstrap-servers", bootstrap, "--topic", input, "--schema-registry-url", registryUrl,
             "--rate", rate.ToString(CultureInfo.InvariantCulture), "--seconds", (WarmUpSeconds + seconds).ToString(CultureInfo.InvariantCulture),
             "--seed", (100 + n).ToString(CultureInfo.InvariantCulture)],
            new ChildProcessOptions { Name = "generator", KeepLines = 20 });
        long measuredFrom, backlogFrom;
        TimeSpan cpuFrom;
        using (var limit = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            limit.CancelAfter(TimeSpan.FromSeconds(WarmUpSeconds + seconds + 90));
            // The measured part starts a warm-up after the first event is in the input.
            while (inputs.Count() == 0 && !generator.HasExited) await Task.Delay(50, limit.Token).ConfigureAwait(false);
            await Task.WhenAny(generator.Exited, Task.Delay(TimeSpan.FromSeconds(WarmUpSeconds), limit.Token)).ConfigureAwait(false);
            (measuredFrom, cpuFrom) = (inputs.Count(), consumer.CpuTime());
            backlogFrom = Math.Max(0, measuredFrom - outputs.Count());
            clock.Restart();
            await generator.Exited.WaitAsync(limit.Token).ConfigureAwait(false);
        }
        var produced = inputs.Count();
        var backlog = Math.Max(0, produced - outputs.Count());
        var busy = clock.Elapsed;
        var cpu = consumer.CpuTime() - cpuFrom;
        var measured = produced - measuredFrom;
        if (consumer.HasExited) throw new InvalidOperationException($"{consumer.Name} exited with {consumer.ExitCode}:{Environment.NewLine}{consumer.Tail()}");
        var summary = generator.Lines.LastOrDefault(l => l.StartsWith('{')) is { } line && generator.ExitCode == 0
            ? JsonSerializer.Deserialize(line, BenchJson.Default.GeneratorSummary)!
            : throw new InvalidOperationException($"generator exited with {generator.ExitCode}:{Environment.NewLine}{generator.Tail()}");

        // The tail: what was produced is read back (bounded), so that latency covers the whole step.
        var tail = Stopwatch.StartNew();
        while (outputs.Count() < summary.Produced && tail.Elapsed < TimeSpan.FromSeconds(20) && !consumer.HasExited)
            await Task.Delay(100, ct).ConfigureAwait(false);
        var latencies = reader is null ? [] : await reader.StopAsync().ConfigureAwait(false);
        await consumer.StopAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);

        var step = new LatencyStep
        {
            Consumer = target.Name,
            TargetRate = rate,
            AchievedRate = summary.AchievedRate,
            Produced = summary.Produced,
            GeneratorMaxBehindMs = summary.MaxBehindMs,
            BacklogAtEnd = backlog,
            BacklogGrowth = backlog - backlogFrom,
            Sustained = summary.AchievedRate >= MinAchieved * rate && backlog - backlogFrom <= MaxBacklogGrowthSeconds * rate && backlog <= MaxBacklogSeconds * rate,
            CpuMicrosPerEvent = measured > 0 ? Math.Round(cpu.TotalMicroseconds / measured, 2) : double.NaN,
            CpuCoresBusy = Math.Round(cpu.TotalSeconds / busy.TotalSeconds, 2),
            P50Ms = double.NaN, P95Ms = double.NaN, P99Ms = double.NaN, MaxMs = double.NaN,
        };
        if (reader is not null)
        {
            latencies.Sort();
            double P(double q) => latencies.Count == 0 ? double.NaN : latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(q * latencies.Count) - 1)];
            (step.Samples, step.Missing) = (latencies.Count, (int)Math.Max(0, summary.Produced - reader.Received));
            (step.P50Ms, step.P95Ms, step.P99Ms, step.MaxMs) = (P(0.50), P(0.95), P(0.99), latencies.Count == 0 ? double.NaN : latencies[^1]);
        }
        return step;
    }

    /// <summary>
    /// Reads a prediction topic from its end on its own thread: per prediction, receive time minus event time (the
    /// generator's production time); the warm-up after the first event is not kept.
    /// </summary>
    private sealed class LatencyReader : IDisposable
    {
        private readonly IConsumer<byte[], byte[]> _consumer;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<List<double>> _reading;
        private long _received;

        public LatencyReader(string bootstrap, string predictions)
        {
            _consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
            {
                BootstrapServers = bootstrap, GroupId = "bench-latency-reader", EnableAutoCommit = false, FetchWaitMaxMs = 5,
                IsolationLevel = IsolationLevel.ReadUncommitted, ClientId = "streaminference-bench-reader",
            }).Build();
            using (var offsets = new TopicOffsets(bootstrap, predictions))
                _consumer.Assign(offsets.Resolve("end").Select(p => new TopicPartitionOffset(predictions, p.Partition, p.Offset)));
            _reading = Task.Factory.StartNew(Read, TaskCreationOptions.LongRunning);
        }

        public long Received => Interlocked.Read(ref _received);

        private List<double> Read()
        {
            var latencies = new List<double>(1 << 16);
            long warmUpEnd = long.MaxValue;
            while (!_stop.IsCancellationRequested)
            {
                var r = _consumer.Consume(50);
                if (r?.Message is null) continue;
                var at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                var source = PredictionReader.ReadEventTimeMs(r.Message.Value);
                if (at - source is < -1000 or > 86_400_000)
                    throw new InvalidDataException($"prediction event_time {source} is not a time near now ({at}): the prediction layout changed?");
                Interlocked.Increment(ref _received);
                if (warmUpEnd == long.MaxValue) warmUpEnd = source + (long)(WarmUpSeconds * 1000);
                if (source >= warmUpEnd) latencies.Add(at - source);
            }
            return latencies;
        }

        /// <summary>Stops reading; the latencies of the measured part, in ms.</summary>
        public async Task<List<double>> StopAsync()
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            return await _reading.ConfigureAwait(false);
        }

        public void Dispose()
        {
            _stop.Cancel();
            // The reader thread must be done before the consumer it reads from is disposed.
            try
            {
                _reading.Wait();
            }
            catch (AggregateException)
            {
                // already reported by StopAsync
            }
            _consumer.Close();
            _consumer.Dispose();
            _stop.Dispose();
        }
    }
}
