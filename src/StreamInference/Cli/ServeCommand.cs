using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

public static class ServeCommand
{
    private static readonly Option<string?> ConfigFile = new("--config") { Description = "appsettings-style JSON file (default: appsettings.json next to the binary or in the working directory)." };
    private static readonly Option<string?> Bootstrap = new("--bootstrap-servers") { Description = "Kafka bootstrap servers (Kafka:BootstrapServers; env KAFKA_BOOTSTRAP_SERVERS)." };
    private static readonly Option<string?> Registry = new("--schema-registry-url") { Description = "Schema registry URL (SchemaRegistry:Url; env SCHEMA_REGISTRY_URL)." };
    private static readonly Option<string?> Redis = new("--redis") { Description = "Redis configuration or redis:// URL (Redis:Configuration; env REDIS_URL)." };
    private static readonly Option<string?> Group = new("--group-id") { Description = "Consumer group (Kafka:GroupId)." };
    private static readonly Option<string?> Input = new("--input-topic") { Description = "Input topic (Kafka:InputTopic)." };
    private static readonly Option<string?> Output = new("--output-topic") { Description = "Prediction topic (Kafka:OutputTopic)." };
    private static readonly Option<string?> Model = new("--model") { Description = "Model as name or name@version (Model:Name, Model:Version)." };
    private static readonly Option<int?> Port = new("--metrics-port") { Description = "Port of /metrics, /healthz, /readyz (Http:Port; 0 = any free port)." };
    private static readonly Option<bool> PrintConfig = new("--print-config") { Description = "Print the effective settings (defaults included, credentials masked), check them and exit: 0 when they are valid, 2 with the problems otherwise." };
    private static readonly Option<string[]> Set = new("--set") { Description = "Any setting as Section:Key=Value (repeatable), e.g. --set Pipeline:MaxBatchSize=512.", AllowMultipleArgumentsPerToken = false };

    public static Command Create()
    {
        var command = new Command("serve", "Run the processor: consume events, score them, publish predictions. " +
                                           "Configuration: appsettings.json < KAFKA_BOOTSTRAP_SERVERS/SCHEMA_REGISTRY_URL/REDIS_URL < STREAMINFERENCE__Section__Key < flags.")
        {
            ConfigFile, Bootstrap, Registry, Redis, Group, Input, Output, Model, Port, Set, PrintConfig,
        };
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        var flags = new Dictionary<string, string?>();
        void Map(Option<string?> o, string key)
        {
            if (parse.GetValue(o) is { } v) flags[key] = v;
        }
        Map(Bootstrap, "Kafka:BootstrapServers");
        Map(Registry, "SchemaRegistry:Url");
        if (parse.GetValue(Redis) is { } redis) flags["Redis:Configuration"] = RedisUrl.ToConfiguration(redis);
        Map(Group, "Kafka:GroupId");
        Map(Input, "Kafka:InputTopic");
        Map(Output, "Kafka:OutputTopic");
        if (parse.GetValue(Model) is { } model)
        {
            var at = model.IndexOf('@');
            flags["Model:Name"] = at < 0 ? model : model[..at];
            if (at >= 0) flags["Model:Version"] = model[(at + 1)..];
        }
        if (parse.GetValue(Port) is { } port) flags["Http:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var s in parse.GetValue(Set) ?? [])
        {
            var eq = s.IndexOf('=');
            if (eq <= 0)
            {
                await Console.Error.WriteLineAsync($"--set '{s}': expected Section:Key=Value.").ConfigureAwait(false);
                return 2;
            }
            flags[s[..eq]] = s[(eq + 1)..];
        }

        ProcessorOptions options;
        Microsoft.Extensions.Configuration.IConfigurationRoot configuration;
        try
        {
            configuration = ProcessorConfiguration.Build(parse.GetValue(ConfigFile), flags);
            options = ProcessorConfiguration.Bind(configuration);
            if (parse.GetValue(PrintConfig))
            {
                foreach (var line in ConfigurationPrinter.Lines(options)) Console.WriteLine(line);
            }
            var errors = ProcessorOptionsValidator.Validate(options, PathResolver.Resolve);
            if (errors.Count > 0) throw new OptionsValidationException(errors);
            if (parse.GetValue(PrintConfig)) return 0;
        }
        catch (Exception e) when (e is OptionsValidationException or FileNotFoundException or InvalidDataException)
        {
            await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return 2;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Configuration.AddConfiguration(configuration);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
        builder.WebHost.UseKestrel(k => k.Listen(options.Http.Host == "0.0.0.0" ? System.Net.IPAddress.Any : System.Net.IPAddress.Parse(options.Http.Host), options.Http.Port));
        var registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(registry);
        builder.Services.AddSingleton(options);
        // SIGTERM: stop consuming, drain and publish what is in flight, commit, close — within
        // Pipeline:ShutdownTimeoutMs, plus a margin for leaving the group; then the host gives up.
        // Exactly-once adds the final commit (bounded by one transaction timeout, plus an abort).
        var transactionBound = options.Kafka.Delivery == DeliveryGuarantee.ExactlyOnce ? TimeSpan.FromMilliseconds(2.0 * options.Kafka.TransactionTimeoutMs) : TimeSpan.Zero;
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromMilliseconds(options.Pipeline.ShutdownTimeoutMs) + transactionBound + TimeSpan.FromSeconds(10));
        builder.Services.AddSingleton(sp => new StreamProcessor(options, sp.GetRequiredService<ILoggerFactory>(), factory));
        builder.Services.AddHostedService<ProcessorService>();
        var app = builder.Build();
        app.MapGet("/metrics", async (HttpContext http) =>
        {
            http.Response.ContentType = PrometheusConstants.ExporterContentTypeValue.ToString();
            await registry.CollectAndExportAsTextAsync(http.Response.Body, http.RequestAborted).ConfigureAwait(false);
        });
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", (StreamProcessor p) => p.IsReady ? Results.Text("ready") : Results.Text("not ready", statusCode: 503));
        await app.RunAsync(ct).ConfigureAwait(false);
        return Environment.ExitCode;
    }
}

/// <summary>Runs the processor for the host's lifetime; a fatal error stops the host with exit code 1.</summary>
public sealed partial class ProcessorService(StreamProcessor processor, IHostApplicationLifetime lifetime, ILogger<ProcessorService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.Yield();
            await processor.RunSupervisedAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Log.Fatal(log, Secrets.RedactText(e.Message), e);
            Environment.ExitCode = 1;
        }
        finally
        {
            lifetime.StopApplication();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Critical, Message = "Processor stopped: {Reason}")]
        public static partial void Fatal(ILogger logger, string reason, Exception e);
    }
}
