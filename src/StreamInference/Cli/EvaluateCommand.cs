using System.CommandLine;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Evaluation;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

/// <summary>
/// <c>streaminference evaluate</c>: the label join and the live performance per model, as a consumer group of its own
/// (see <see cref="LiveEvaluator"/>). Same configuration as <c>serve</c> (the Evaluation section is its own).
/// </summary>
public static class EvaluateCommand
{
    private static readonly ServiceOptions Service = new(
        "appsettings-style JSON file, the processor's (the Evaluation section is this command's).",
        "Port of /metrics and /healthz (Http:Port; 0 = any free port).",
        "Redis configuration or redis:// URL for the join's state and the windows (Redis:Configuration; env REDIS_URL).");
    private static readonly Option<string?> Labels = new("--labels-topic") { Description = "Ground-truth labels, schemas/label.avsc (Evaluation:LabelsTopic, default labels)." };
    private static readonly Option<string?> Group = new("--group-id") { Description = "Consumer group (Evaluation:GroupId; default <Kafka:GroupId>-evaluate)." };
    private static readonly Option<bool> PrintConfig = new("--print-config") { Description = "Print the effective settings (defaults included, credentials masked), check what evaluate needs and exit: 0 when valid, 2 with the problems otherwise." };

    public static Command Create()
    {
        var command = new Command("evaluate",
            "Join ground-truth labels to the predictions of their events (the champion's and every challenger's) and report each model's " +
            "performance per window: AUC with its interval, precision and recall at Model:DecisionThreshold, log loss, Brier score, calibration " +
            "error, label coverage. Reads Kafka:OutputTopic, Kafka:ShadowTopic and Evaluation:LabelsTopic as its own consumer group; keeps the " +
            "join and the windows in Redis (a restart loses and doubles nothing); publishes an Avro EvaluationReport per window on Evaluation:Topic.")
        {
            Labels, Group, PrintConfig,
        };
        foreach (var option in Service.All) command.Options.Add(option);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        var flags = new Dictionary<string, string?>();
        if (!Service.Map(parse, flags, (Labels, "Evaluation:LabelsTopic"), (Group, "Evaluation:GroupId"))) return 2;

        ProcessorOptions options;
        long horizonMs;
        try
        {
            options = ProcessorConfiguration.Bind(ProcessorConfiguration.Build(parse.GetValue(Service.ConfigFile), flags));
            var errors = new List<string>();
            if (string.IsNullOrWhiteSpace(options.Kafka.BootstrapServers)) errors.Add("Kafka:BootstrapServers (env KAFKA_BOOTSTRAP_SERVERS) is required.");
            if (string.IsNullOrWhiteSpace(options.Redis.Configuration)) errors.Add("Redis:Configuration (env REDIS_URL) is required.");
            options.SchemaRegistry.Validate(errors);
            options.Evaluation.Validate(options, errors);
            if (errors.Count > 0) throw new ConfigurationException(errors);
            horizonMs = Horizon(options);
            if (parse.GetValue(PrintConfig))
            {
                foreach (var line in ConfigurationPrinter.Lines(options)) Console.WriteLine(line);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# label join horizon in use: {horizonMs} ms"));
                return 0;
            }
        }
        catch (Exception e) when (e is ConfigurationException or FileNotFoundException or InvalidDataException)
        {
            await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return 2;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
        builder.WebHost.ConfigureKestrel(k => k.Listen(options.Http.Host == "0.0.0.0" ? System.Net.IPAddress.Any : System.Net.IPAddress.Parse(options.Http.Host), options.Http.Port));
        var registry = Metrics.NewCustomRegistry();
        await using var app = builder.Build();
        app.MapGet("/metrics", async (HttpContext http) =>
        {
            http.Response.ContentType = PrometheusConstants.ExporterContentTypeValue.ToString();
            await registry.CollectAndExportAsTextAsync(http.Response.Body, http.RequestAborted).ConfigureAwait(false);
        });
        app.MapGet("/healthz", () => Results.Text("ok"));
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        var log = loggers.CreateLogger("evaluate");
        try
        {
            using var redis = await ConnectionMultiplexer.ConnectAsync(options.Redis.Configuration).ConfigureAwait(false);
            using var schemas = new AvroSchemaRegistry(options.SchemaRegistry);
            var evaluator = new LiveEvaluator(options, horizonMs, redis.GetDatabase(), schemas, Metrics.WithCustomRegistry(registry), loggers,
                ReferenceAucs(options.Model.Repository));
            evaluator.Reported += w => log.LogInformation("{Line}", Describe(w));
            await app.StartAsync(ct).ConfigureAwait(false);
            await evaluator.RunAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or RedisTimeoutException or Confluent.Kafka.KafkaException or Confluent.SchemaRegistry.SchemaRegistryException or HttpRequestException)
        {
            log.LogCritical("Evaluation stopped: {Reason}", Secrets.RedactText(e.Message));
            return 1;
        }
        finally
        {
            await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        return 0;
    }

    /// <summary>Evaluation:HorizonMs, or twice the feature set's label.knownAfter (most labels come within it, late ones within twice).</summary>
    public static long Horizon(ProcessorOptions options)
    {
        if (options.Evaluation.HorizonMs > 0) return options.Evaluation.HorizonMs;
        var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(options.Features.Definition));
        if (plan.LabelKnownAfterMs <= 0)
            throw new ConfigurationException([$"Evaluation:HorizonMs: set it, or give the feature set ({options.Features.Definition}) a label.knownAfter to derive it from."]);
        return 2 * plan.LabelKnownAfterMs;
    }

    /// <summary>Each model's (name@version) test AUC from its manifest in <paramref name="repository"/>, when it has one.</summary>
    public static Func<string, double?> ReferenceAucs(string repository)
    {
        var known = new System.Collections.Concurrent.ConcurrentDictionary<string, double?>(StringComparer.Ordinal);
        return model => known.GetOrAdd(model, m =>
        {
            var at = m.LastIndexOf('@');
            if (at <= 0) return null;
            try
            {
                var dir = ModelRepository.Resolve(PathResolver.Resolve(repository), m[..at], m[(at + 1)..]);
                return ModelManifest.Load(Path.Combine(dir, "manifest.json")).Metrics?.GetValueOrDefault("test_auc") is > 0 and var auc ? auc : null;
            }
            catch (Exception e) when (e is FileNotFoundException or InvalidDataException or DirectoryNotFoundException)
            {
                return null;
            }
        });
    }

    /// <summary>One line per reported window, for logs and the demo's live view.</summary>
    public static string Describe(EvaluatedWindow w)
    {
        var r = w.Report;
        var m = r.Metrics;
        var what = r.Kind == Core.Evaluation.EvaluationWindowKind.EventTime
            ? string.Create(CultureInfo.InvariantCulture, $"window {DateTimeOffset.FromUnixTimeMilliseconds(r.StartMs):yyyy-MM-dd HH:mm:ss}+{(r.EndMs - r.StartMs) / 1000}s (final, coverage {r.LabelCoverage:P1})")
            : string.Create(CultureInfo.InvariantCulture, $"labels {r.Sequence}");
        var reference = w.ReferenceAuc is { } a ? string.Create(CultureInfo.InvariantCulture, $" (training {a:0.0000})") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"evaluation {r.Model} [{r.Arm}] {what}: {m.Count:N0} labelled, {m.Positives} positive, AUC {m.Auc:0.0000}{reference}, precision {m.Precision:0.000} recall {m.Recall:0.000}, log loss {m.LogLoss:0.0000}, Brier {m.Brier:0.0000}, ECE {m.CalibrationError:0.0000}");
    }
}
