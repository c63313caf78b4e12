using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.EventProcessors;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Csv;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Validators;
using Perfolizer.Horology;

namespace StreamInference.Benchmarks;

/// <param name="RedisConfiguration">Redis for the redis-fetch group; null starts an embedded Garnet.</param>
/// <param name="ArtifactsPath">Where BenchmarkDotNet writes its log and reports (markdown, CSV).</param>
/// <param name="Quick">Fewer and shorter iterations: a smoke run, not a measurement (hot methods may not
/// have reached the JIT's optimized tier yet).</param>
public sealed record MicroSuiteOptions(string? RedisConfiguration, string ArtifactsPath, bool Quick);

/// <param name="Group">Short name of the benchmark class ("batcher", "redis-fetch", ...).</param>
/// <param name="Parameters">"BatchSize=256", or empty.</param>
/// <param name="NsPerEvent">Mean time per event (per operation); NaN when the benchmark failed.</param>
/// <param name="AllocatedBytesPerEvent">Managed bytes allocated per event; null when not measured.</param>
/// <param name="RatioToBaseline">Mean time over the group's baseline with the same parameters; null without one.</param>
public sealed record MicroResult(string Group, string Method, string Parameters, bool Baseline, double NsPerEvent, double? AllocatedBytesPerEvent, double? RatioToBaseline);

/// <summary>
/// The micro-benchmark suite, run in this process by BenchmarkDotNet's in-process toolchain (no SDK, no
/// child build): a short job over <see cref="Benchmarks"/>, results per event. About two minutes on two
/// cores (Quick: under one); BenchmarkDotNet's log and reports go to the artifacts path.
/// </summary>
public static class MicroSuite
{
    /// <summary>The suite's classes, in the order of the pipeline.</summary>
    public static IReadOnlyList<Type> Benchmarks { get; } =
    [
        typeof(MicroBatcherBenchmarks),
        typeof(PartitionOffsetsBenchmarks),
        typeof(EventDecodeBenchmarks),
        typeof(RedisFetchBenchmarks),
        typeof(FeatureAssemblyBenchmarks),
        typeof(OnnxScoringBenchmarks),
        typeof(PredictionEncodeBenchmarks),
        typeof(DriftUpdateBenchmarks),
    ];

    public static IReadOnlyList<MicroResult> Run(MicroSuiteOptions options, TextWriter log) => Run(options, log, Benchmarks);

    /// <summary>Runs only <paramref name="benchmarks"/> (classes of this assembly).</summary>
    public static IReadOnlyList<MicroResult> Run(MicroSuiteOptions options, TextWriter log, IReadOnlyList<Type> benchmarks)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        var previousRedis = BenchmarkEnvironment.RedisConfiguration;
        BenchmarkEnvironment.RedisConfiguration = options.RedisConfiguration;
        try
        {
            var config = CreateConfig(options, log);
            var started = Stopwatch.GetTimestamp();
            var summaries = BenchmarkRunner.Run([.. benchmarks], config);
            var results = new List<MicroResult>();
            foreach (var summary in summaries) results.AddRange(Map(summary));
            log.WriteLine($"Micro-benchmarks: {results.Count} results in {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s; reports in {options.ArtifactsPath}");
            return results;
        }
        finally
        {
            BenchmarkEnvironment.RedisConfiguration = previousRedis;
        }
    }

    /// <summary>The suite's classes whose group is one of <paramref name="groups"/> ("batcher", "onnx-score", ...).</summary>
    public static IReadOnlyList<Type> Select(IEnumerable<string> groups)
    {
        var wanted = new HashSet<string>(groups, StringComparer.OrdinalIgnoreCase);
        return [.. Benchmarks.Where(t => wanted.Contains(GroupOf(t)))];
    }

    /// <summary>Writes <paramref name="results"/> as an aligned text table.</summary>
    public static void WriteTable(IReadOnlyList<MicroResult> results, TextWriter output)
    {
        output.WriteLine($"{"group",-12} {"method",-24} {"params",-16} {"ns/event",12} {"B/event",10} {"ratio",7}");
        foreach (var r in results)
        {
            var bytes = r.AllocatedBytesPerEvent is { } b ? b.ToString(b < 10 ? "0.##" : "0", CultureInfo.InvariantCulture) : "-";
            var ratio = r.RatioToBaseline is { } x ? x.ToString("0.000", CultureInfo.InvariantCulture) : "-";
            var method = r.Baseline ? r.Method + " *" : r.Method;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Group,-12} {method,-24} {r.Parameters,-16} {r.NsPerEvent,12:0.0} {bytes,10} {ratio,7}"));
        }
        output.WriteLine("* baseline; ratio = ns/event over the baseline's with the same parameters");
    }

    private static IConfig CreateConfig(MicroSuiteOptions options, TextWriter log)
    {
        // Short fixed iterations: every invocation handles hundreds to thousands of events, so a few
        // 100 ms iterations already give stable per-event means. UnrollFactor and MinInvokeCount 1: one
        // Redis invocation can take a quarter of a second (1,024 events at one round trip each), and the
        // default four per iteration would make those iterations last a second.
        var job = Job.Default
            // Output logged: it goes to the log file only (see ErrorLogger), and it carries a failing benchmark's exception.
            .WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(5), logOutput: true))
            .WithLaunchCount(1)
            .WithWarmupCount(2)
            .WithIterationCount(options.Quick ? 2 : 6)
            .WithIterationTime(TimeInterval.FromMilliseconds(options.Quick ? 40 : 120))
            .WithUnrollFactor(1)
            .WithMinInvokeCount(1)
            .WithEvaluateOverhead(false)
            .WithId(options.Quick ? "quick" : "short");

        var errors = new ErrorLogger(log);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddExporter(MarkdownExporter.GitHub, CsvExporter.Default)
            .AddLogger(errors)
            .AddEventProcessor(new ProgressReporter(log, errors))
            .WithArtifactsPath(options.ArtifactsPath);

        if (IsDebugBuild())
        {
            log.WriteLine("warning: the benchmarks are a Debug build; timings are not representative (build with -c Release).");
            config = config.WithOptions(ConfigOptions.DisableOptimizationsValidator);
        }
        return config;
    }

    private static bool IsDebugBuild()
    {
        foreach (var assembly in new[] { typeof(MicroSuite).Assembly, typeof(Core.Pipeline.EventBatch).Assembly })
            if (assembly.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled == true) return true;
        return false;
    }

    private static IEnumerable<MicroResult> Map(Summary summary)
    {
        foreach (var report in summary.Reports)
        {
            var benchmark = report.BenchmarkCase;
            var mean = report.ResultStatistics?.Mean ?? double.NaN;
            var baseline = summary.Reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.Baseline
                && r.BenchmarkCase.Descriptor.Type == benchmark.Descriptor.Type
                && r.BenchmarkCase.Parameters.ValueInfo == benchmark.Parameters.ValueInfo);
            double? ratio = baseline?.ResultStatistics is { Mean: > 0 } b && !double.IsNaN(mean) ? mean / b.Mean : null;
            yield return new MicroResult(
                GroupOf(benchmark),
                benchmark.Descriptor.WorkloadMethod.Name,
                string.Join(", ", benchmark.Parameters.Items.Select(p => $"{p.Name}={p.Value}")),
                benchmark.Descriptor.Baseline,
                mean,
                BytesPerOperation(report),
                ratio);
        }
    }

    private static string GroupOf(BenchmarkCase benchmark) => GroupOf(benchmark.Descriptor.Type);

    private static string GroupOf(Type type) =>
        type.GetCustomAttribute<BenchmarkDotNet.Attributes.BenchmarkCategoryAttribute>()?.Categories.FirstOrDefault() ?? type.Name;

    /// <summary>As BenchmarkDotNet's Allocated column, but not rounded to whole bytes (per event it often is a fraction).</summary>
    private static double? BytesPerOperation(BenchmarkReport report)
    {
        var gc = report.GcStats;
        if (gc.TotalOperations <= 0 || gc.GetTotalAllocatedBytes(false) is not { } total) return null;
        return (double)total / gc.TotalOperations;
    }

    /// <summary>One line per finished benchmark, so a long run shows where it is.</summary>
    private sealed class ProgressReporter(TextWriter log, ErrorLogger errors) : EventProcessor
    {
        private int _done;
        private int _total;

        public override void OnStartBuildStage(IReadOnlyList<BuildPartition> partitions)
        {
            _done = 0;
            _total = partitions.Sum(p => p.Benchmarks.Length);
        }

        public override void OnValidationError(ValidationError validationError) =>
            log.WriteLine($"benchmark validation {(validationError.IsCritical ? "error" : "warning")}: {validationError.Message}");

        public override void OnEndRunBenchmark(BenchmarkCase benchmarkCase, BenchmarkReport report)
        {
            _done++;
            var parameters = benchmarkCase.HasParameters ? " " + benchmarkCase.Parameters.DisplayInfo : "";
            var what = $"{GroupOf(benchmarkCase)} {benchmarkCase.Descriptor.WorkloadMethod.Name}{parameters}";
            if (report.ResultStatistics is not { } stats)
            {
                log.WriteLine($"  [{_done}/{_total}] {what}: FAILED: {errors.TakeLastException() ?? "no result"} (details in the log in the artifacts directory)");
                return;
            }
            errors.TakeLastException();
            var bytes = BytesPerOperation(report) is { } b ? b.ToString("0.##", CultureInfo.InvariantCulture) + " B" : "- B";
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  [{_done}/{_total}] {what}: {stats.Mean:0.0} ns, {bytes} per event"));
        }
    }

    /// <summary>
    /// Passes BenchmarkDotNet's errors to the caller's log (the rest goes to its log file only) and keeps
    /// the first line of the last exception a benchmark printed, for the progress line.
    /// </summary>
    private sealed class ErrorLogger(TextWriter log) : ILogger
    {
        private string? _lastException;

        public string Id => nameof(ErrorLogger);
        public int Priority => 0;

        public string? TakeLastException()
        {
            var last = _lastException;
            _lastException = null;
            return last;
        }

        public void Write(LogKind logKind, string text) => WriteLine(logKind, text);
        public void WriteLine() { }

        public void WriteLine(LogKind logKind, string text)
        {
            if (logKind == LogKind.Error)
            {
                // "Executable ... not found" and the other two are how BenchmarkDotNet reports an in-process
                // run that threw; the progress line says so with the exception.
                if (!text.StartsWith("Executable ", StringComparison.Ordinal) && !text.StartsWith("ExitCode != 0", StringComparison.Ordinal)
                    && !text.StartsWith("No Workload Results", StringComparison.Ordinal))
                    log.WriteLine(text);
                return;
            }
            // A benchmark that threw prints exception.ToString(): keep its innermost "Type: message" line.
            string? found = null;
            foreach (var raw in text.Split('\n'))
            {
                var line = raw.Trim();
                var inner = line.LastIndexOf("---> ", StringComparison.Ordinal);
                if (inner >= 0) line = line[(inner + 5)..];
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0 && line[..colon].EndsWith("Exception", StringComparison.Ordinal) && !line[..colon].Contains(' ', StringComparison.Ordinal))
                    found = line;
            }
            if (found is not null) _lastException = found;
        }

        public void Flush() => log.Flush();
    }
}
