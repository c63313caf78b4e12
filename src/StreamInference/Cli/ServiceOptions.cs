using System.CommandLine;
using System.Globalization;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

/// <summary>
/// The options <c>serve</c> and <c>evaluate</c> share: the configuration file, where Kafka, the registry and Redis
/// are, the metrics port and <c>--set</c>; each command makes its own instances (an option belongs to one command).
/// </summary>
public sealed class ServiceOptions(string configDescription, string portDescription, string redisDescription)
{
    public Option<string?> ConfigFile { get; } = new("--config") { Description = configDescription };
    public Option<string?> Bootstrap { get; } = new("--bootstrap-servers") { Description = "Kafka bootstrap servers (Kafka:BootstrapServers; env KAFKA_BOOTSTRAP_SERVERS)." };
    public Option<string?> Registry { get; } = new("--schema-registry-url") { Description = "Schema registry URL (SchemaRegistry:Url; env SCHEMA_REGISTRY_URL)." };
    public Option<string?> Redis { get; } = new("--redis") { Description = redisDescription };
    public Option<int?> Port { get; } = new("--metrics-port") { Description = portDescription };
    public Option<string[]> Set { get; } = new("--set") { Description = "Any setting as Section:Key=Value (repeatable), e.g. --set Pipeline:MaxBatchSize=512.", AllowMultipleArgumentsPerToken = false };

    public IEnumerable<Option> All => [ConfigFile, Bootstrap, Registry, Redis, Port, Set];

    /// <summary>
    /// The given options, and the command's own string options in <paramref name="more"/> (option, configuration key), as
    /// configuration keys into <paramref name="flags"/>; false (after one line on stderr) for a --set without '='.
    /// </summary>
    public bool Map(ParseResult parse, Dictionary<string, string?> flags, params (Option<string?> Option, string Key)[] more)
    {
        foreach (var (option, key) in more)
            if (parse.GetValue(option) is { } value) flags[key] = value;
        if (parse.GetValue(Bootstrap) is { } bootstrap) flags["Kafka:BootstrapServers"] = bootstrap;
        if (parse.GetValue(Registry) is { } registry) flags["SchemaRegistry:Url"] = registry;
        if (parse.GetValue(Redis) is { } redis) flags["Redis:Configuration"] = RedisUrl.ToConfiguration(redis);
        if (parse.GetValue(Port) is { } port) flags["Http:Port"] = port.ToString(CultureInfo.InvariantCulture);
        foreach (var s in parse.GetValue(Set) ?? [])
        {
            var eq = s.IndexOf('=');
            if (eq <= 0)
            {
                Console.Error.WriteLine($"--set '{s}': expected Section:Key=Value.");
                return false;
            }
            flags[s[..eq]] = s[(eq + 1)..];
        }
        return true;
    }
}
