using Microsoft.Extensions.Configuration;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

/// <summary>
/// Builds the processor's configuration. Later sources win:
/// appsettings.json → well-known variables (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, REDIS_URL)
/// → STREAMINFERENCE__Section__Key variables → command-line flags.
/// </summary>
public static class ProcessorConfiguration
{
    public static IConfigurationRoot Build(string? configFile, IDictionary<string, string?> flags)
    {
        var builder = new ConfigurationBuilder();
        var file = configFile ?? PathResolver.Resolve("appsettings.json");
        if (configFile is not null && !File.Exists(configFile))
            throw new FileNotFoundException($"--config: file '{configFile}' does not exist.");
        if (File.Exists(file)) builder.AddJsonFile(Path.GetFullPath(file), optional: false);
        builder.AddInMemoryCollection(WellKnownEnvironment());
        builder.AddEnvironmentVariables("STREAMINFERENCE__");
        builder.AddInMemoryCollection(flags);
        return builder.Build();
    }

    public static Dictionary<string, string?> WellKnownEnvironment()
    {
        var values = new Dictionary<string, string?>();
        if (Environment.GetEnvironmentVariable("KAFKA_BOOTSTRAP_SERVERS") is { Length: > 0 } kafka) values["Kafka:BootstrapServers"] = kafka;
        if (Environment.GetEnvironmentVariable("SCHEMA_REGISTRY_URL") is { Length: > 0 } registry) values["SchemaRegistry:Url"] = registry;
        if (Environment.GetEnvironmentVariable("REDIS_URL") is { Length: > 0 } redis) values["Redis:Configuration"] = RedisUrl.ToConfiguration(redis);
        return values;
    }

    public static ProcessorOptions Bind(IConfiguration configuration)
    {
        var options = new ProcessorOptions();
        try
        {
            configuration.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new OptionsValidationException([e.Message + (e.InnerException is null ? "" : " " + e.InnerException.Message)]);
        }
        return options;
    }
}
