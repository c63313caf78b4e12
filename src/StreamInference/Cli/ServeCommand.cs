using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;
using StreamInference.Hosting;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

public static class ServeCommand
{
    private static readonly ServiceOptions Service = new(
        "appsettings-style JSON file (default: appsettings.json next to the binary or in the working directory).",
        "Port of /metrics, /healthz, /readyz (Http:Port; 0 = any free port).",
        "Redis configuration or redis:// URL (Redis:Configuration; env REDIS_URL).");
    private static readonly Option<string?> Group = new("--group-id") { Description = "Consumer group (Kafka:GroupId)." };
    private static readonly Option<string?> Input = new("--input-topic") { Description = "Input topic (Kafka:InputTopic)." };
    private static readonly Option<string?> Output = new("--output-topic") { Description = "Prediction topic (Kafka:OutputTopic)." };
    private static readonly Option<string?> Model = new("--model") { Description = "Model as name or name@version (Model:Name, Model:Version)." };
    private static readonly Option<bool> PrintConfig = new("--print-config") { Description = "Print the effective settings (defaults included, credentials masked), check them and exit: 0 when they are valid, 2 with the problems otherwise." };
    private static readonly Option<bool> EmbeddedKafka = new("--embedded-kafka")
    {
        Hidden = true,
        Description = "Dev services only: the Kafka cluster is the embedded librdkafka mock cluster, which does not store transactional offsets; " +
                      "exactly-once then also commits each transaction's offsets as group offsets.",
    };

    public static Command Create()
    {
        var command = new Command("serve", "Run the processor: consume events, score them, publish predictions. " +
                                           "Configuration: appsettings.json < KAFKA_BOOTSTRAP_SERVERS/SCHEMA_REGISTRY_URL/REDIS_URL < STREAMINFERENCE__Section__Key < flags.")
        {
            Group, Input, Output, Model, PrintConfig, EmbeddedKafka,
        };
        foreach (var option in Service.All) command.Options.Add(option);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        var flags = new Dictionary<string, string?>();
        if (parse.GetValue(Model) is { } model)
        {
            var at = model.IndexOf('@');
            flags["Model:Name"] = at < 0 ? model : model[..at];
            if (at >= 0) flags["Model:Version"] = model[(at + 1)..];
        }
        if (!Service.Map(parse, flags, (Group, "Kafka:GroupId"), (Input, "Kafka:InputTopic"), (Output, "Kafka:OutputTopic"))) return 2;

        IConfigurationRoot configuration;
        try
        {
            configuration = ProcessorConfiguration.Build(parse.GetValue(Service.ConfigFile), flags);
            if (parse.GetValue(PrintConfig)) return PrintConfiguration(configuration);
        }
        catch (Exception e) when (e is ConfigurationException or FileNotFoundException or InvalidDataException)
        {
            await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return 2;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Configuration.AddConfiguration(configuration);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
        var registry = Metrics.NewCustomRegistry();
        builder.Services.AddStreamInference(configuration, Metrics.WithCustomRegistry(registry), parse.GetValue(EmbeddedKafka));
        builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptionsMonitor<ProcessorOptions>>((kestrel, processor) =>
        {
            var http = processor.CurrentValue.Http;
            kestrel.Listen(http.Host == "0.0.0.0" ? System.Net.IPAddress.Any : System.Net.IPAddress.Parse(http.Host), http.Port);
        });
        WebApplication app;
        try
        {
            // The settings are bound and validated while the host is built (its shutdown bound depends on them),
            // once: ValidateOnStart then finds them in the options cache. A bad setting is one message and exit
            // code 2, before anything starts.
            app = builder.Build();
            _ = app.Services.GetRequiredService<IOptionsMonitor<ProcessorOptions>>().CurrentValue;
        }
        catch (Exception e) when (e is ConfigurationException or OptionsValidationException)
        {
            await Console.Error.WriteLineAsync(e is OptionsValidationException v ? new ConfigurationException([.. v.Failures]).Message : e.Message).ConfigureAwait(false);
            return 2;
        }
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

    /// <summary>--print-config: the effective settings (credentials masked), then their check: 0 when valid, 2 with the problems.</summary>
    private static int PrintConfiguration(IConfiguration configuration)
    {
        var options = ProcessorConfiguration.Bind(configuration);
        foreach (var line in ConfigurationPrinter.Lines(options)) Console.WriteLine(line);
        var errors = ProcessorOptionsValidator.Validate(options, PathResolver.Resolve);
        if (errors.Count == 0) return 0;
        Console.Error.WriteLine(new ConfigurationException(errors).Message);
        return 2;
    }
}
