using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;
using StreamInference.Core.Drift;
using StreamInference.DevServices.Kafka;
using StreamInference.Infrastructure.Kafka.Commit;
using StreamInference.Infrastructure.Metrics;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Starts a processor for a test, in this process (<see cref="StartAsync"/>) or as a
/// <c>streaminference serve</c> child (<see cref="StartChildAsync"/>), and waits until the consumer
/// group has assigned it partitions: one timeout for every test, a failure that shows the processor's
/// last log lines, and no waiting on once the processor has ended.
/// </summary>
public static class ProcessorHarness
{
    /// <summary>How long a processor may take to load, connect and be assigned its partitions.</summary>
    public static readonly TimeSpan AssignTimeout = TimeSpan.FromSeconds(90);

    /// <summary>How long a stopped processor may take to drain, commit and end.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The tests run against the embedded Kafka-protocol cluster (set by <see cref="ServicesFixture"/>). It does
    /// not store transactional offset commits, so every processor a test starts gets the dev services' offset
    /// mirror: in this process <see cref="MirroredTransactionalOffsets.Decorate"/>, as a child <c>--embedded-kafka</c>.
    /// (It changes nothing for at-least-once processors.) The one place this is decided.
    /// </summary>
    internal static bool EmbeddedKafka { get; set; }

    internal static Func<ICommitStrategy, ICommitStrategy>? DecorateCommit =>
        EmbeddedKafka ? MirroredTransactionalOffsets.Decorate(NullLogger.Instance) : null;

    /// <summary>
    /// A <see cref="StreamProcessor"/> in this process, running (<see cref="StreamProcessor.RunAsync"/>, or
    /// <see cref="StreamProcessor.RunSupervisedAsync"/> when <paramref name="supervised"/>), once it owns partitions.
    /// Its logs go to the test output; its metrics to a registry of its own.
    /// </summary>
    public static async Task<InProcessProcessor> StartAsync(ProcessorOptions options, ITestOutputHelper output,
        IPipelineObserver? observer = null, Action<string>? onWedged = null, bool supervised = false)
    {
        var processor = new InProcessProcessor(options, output, observer, onWedged, supervised);
        try
        {
            await processor.WaitAssignedAsync();
            return processor;
        }
        catch
        {
            await processor.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// <c>streaminference serve</c> as a child process with exactly <paramref name="settings"/> (none from
    /// this environment), every output line kept. It may not own partitions yet: see <see cref="StartChildAsync"/>.
    /// </summary>
    public static ChildProcess StartChild(IReadOnlyDictionary<string, string> settings) =>
        ChildProcess.Start(TestCli.Command, ["serve", .. EmbeddedKafka ? ["--embedded-kafka"] : Array.Empty<string>(), .. ChildProcess.SetArguments(settings)], new ChildProcessOptions
        {
            Name = "processor",
            KeepLines = int.MaxValue,
            DropEnvironment = TestCli.IsSettingsVariable,
            Environment = new Dictionary<string, string> { ["DOTNET_gcServer"] = "0" },
        });

    /// <summary><see cref="StartChild"/>, once the child logged that it was assigned partitions.</summary>
    public static async Task<ChildProcess> StartChildAsync(IReadOnlyDictionary<string, string> settings)
    {
        var child = StartChild(settings);
        try
        {
            await child.WaitAssignedAsync(AssignTimeout);
            return child;
        }
        catch
        {
            child.Dispose();
            throw;
        }
    }
}

/// <summary>A <see cref="StreamProcessor"/> running in the test process (see <see cref="ProcessorHarness.StartAsync"/>).</summary>
public sealed class InProcessProcessor : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly TestLoggerFactory _logs;
    private Task? _stopped;

    internal InProcessProcessor(ProcessorOptions options, ITestOutputHelper output, IPipelineObserver? observer, Action<string>? onWedged, bool supervised)
    {
        _logs = new TestLoggerFactory(output);
        MetricRegistry = Prometheus.Metrics.NewCustomRegistry();
        MetricFactory = Prometheus.Metrics.WithCustomRegistry(MetricRegistry);
        Processor = new StreamProcessor(options, _logs, MetricFactory) { Observer = observer, OnWedged = onWedged, DecorateCommit = ProcessorHarness.DecorateCommit };
        Run = supervised ? Processor.RunSupervisedAsync(_stop.Token) : Processor.RunAsync(_stop.Token);
    }

    public StreamProcessor Processor { get; }

    /// <summary>The run: it ends when stopped, or when the processor fails.</summary>
    public Task Run { get; }

    /// <summary>The processor's metrics, as /metrics would export them.</summary>
    public CollectorRegistry MetricRegistry { get; }
    public IMetricFactory MetricFactory { get; }

    /// <summary>Available once it runs (<see cref="ProcessorHarness.StartAsync"/> returns a running processor).</summary>
    public ProcessorMetrics Metrics => Processor.Metrics ?? throw new InvalidOperationException("the processor has not loaded its feature set");
    public DriftMonitor? Drift => Processor.Drift;
    public int AssignedPartitions => Processor.AssignedPartitions;

    /// <summary>The last lines the processor logged.</summary>
    public string Tail(int lines = 40) => _logs.Tail(lines);

    /// <summary>
    /// Waits until the processor is ready and owns partitions. A run that ends first fails the wait at once
    /// (with the run's error when it failed); so does <see cref="ProcessorHarness.AssignTimeout"/> passing.
    /// </summary>
    public async Task WaitAssignedAsync()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!(Processor.IsReady && Processor.AssignedPartitions > 0))
        {
            if (Run.IsCompleted)
            {
                await Run;      // a failure to start surfaces here, as itself
                Assert.Fail($"the processor ended before it was assigned partitions:{Environment.NewLine}{Tail()}");
            }
            if (clock.Elapsed > ProcessorHarness.AssignTimeout)
                Assert.Fail($"the processor got no partitions within {ProcessorHarness.AssignTimeout.TotalSeconds:N0} s:{Environment.NewLine}{Tail()}");
            await Task.Delay(20);
        }
    }

    /// <summary>
    /// Waits until <paramref name="done"/>, <paramref name="timeout"/> passes or the run ends, whichever
    /// comes first; whether <paramref name="done"/> holds.
    /// </summary>
    public async Task<bool> WaitUntilAsync(Func<bool> done, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done() && !Run.IsCompleted && clock.Elapsed < timeout) await Task.Delay(50);
        return done();
    }

    /// <summary>Fails the test when the run has ended: <paramref name="message"/>, the run's error and the last log lines.</summary>
    public void AssertRunning(string message)
    {
        if (!Run.IsCompleted) return;
        var error = Run.Exception?.GetBaseException() is { } e ? $" ({e.GetType().Name}: {e.Message})" : "";
        Assert.Fail($"{message}{error}:{Environment.NewLine}{Tail()}");
    }

    /// <summary>Stops the processor and waits up to <see cref="ProcessorHarness.StopTimeout"/> for the run to end; its error, if it failed.</summary>
    public Task StopAsync() => _stopped ??= StopOnceAsync();

    private async Task StopOnceAsync()
    {
        await _stop.CancelAsync();
        await Run.WaitAsync(ProcessorHarness.StopTimeout);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        finally
        {
            _stop.Dispose();
        }
    }
}
