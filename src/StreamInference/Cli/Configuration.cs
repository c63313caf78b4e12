using System.Reflection;
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

    /// <summary>Top-level sections read by the host rather than bound to <see cref="ProcessorOptions"/>.</summary>
    public static readonly IReadOnlySet<string> HostSections = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "Logging" };

    /// <summary>
    /// Binds the configuration to <see cref="ProcessorOptions"/>. A key that matches no setting (a typo in a
    /// ConfigMap, a setting of another version) is an error naming the key and the closest setting, never
    /// silently ignored.
    /// </summary>
    public static ProcessorOptions Bind(IConfiguration configuration) => Bind(configuration, new ProcessorOptions());

    /// <summary>As <see cref="Bind(IConfiguration)"/>, into <paramref name="options"/> (the options system's instance).</summary>
    public static ProcessorOptions Bind(IConfiguration configuration, ProcessorOptions options)
    {
        var errors = new List<string>();
        foreach (var section in configuration.GetChildren())
        {
            if (!HostSections.Contains(section.Key)) CheckKeys(section, typeof(ProcessorOptions), errors);
        }
        if (errors.Count > 0) throw new ConfigurationException(errors);

        try
        {
            configuration.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new ConfigurationException([e.Message + (e.InnerException is null ? "" : " " + e.InnerException.Message)]);
        }
        return options;
    }

    private static void CheckKeys(IConfigurationSection section, Type owner, List<string> errors)
    {
        var settings = owner.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            // What ConfigurationBinder binds: public getter, and a public setter or a complex value to fill in.
            .Where(p => p.GetMethod?.IsPublic == true && p.GetIndexParameters().Length == 0 && (p.SetMethod?.IsPublic == true || !IsValue(p.PropertyType)))
            .ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        if (!settings.TryGetValue(section.Key, out var setting))
        {
            var parent = section.Path.Contains(':', StringComparison.Ordinal) ? section.Path[..section.Path.LastIndexOf(':')] + ":" : "";
            var closest = settings.Keys.Concat(parent.Length == 0 ? HostSections : [])
                .Select(k => (Key: k, Distance: EditDistance(k.ToLowerInvariant(), section.Key.ToLowerInvariant())))
                .OrderBy(x => x.Distance).FirstOrDefault();
            var hint = closest.Key is not null && closest.Distance <= Math.Max(2, section.Key.Length / 4) ? $"; did you mean {parent}{closest.Key}?" : $"; {(parent.Length == 0 ? "sections" : parent + " settings")}: {string.Join(", ", settings.Keys.Concat(parent.Length == 0 ? HostSections : []))}";
            errors.Add($"Unknown setting {section.Path} (env STREAMINFERENCE__{section.Path.Replace(":", "__", StringComparison.Ordinal)}){hint}");
            return;
        }
        var type = Nullable.GetUnderlyingType(setting.PropertyType) ?? setting.PropertyType;
        // Collections (arrays, lists, dictionaries) take any index or key.
        if (type != typeof(string) && typeof(System.Collections.IEnumerable).IsAssignableFrom(type)) return;
        var children = section.GetChildren().ToList();
        if (IsValue(type))
        {
            if (children.Count > 0) errors.Add($"{section.Path} is a single value, not a section (found {children[0].Path}).");
            return;
        }
        foreach (var child in children) CheckKeys(child, type, errors);
    }

    private static bool IsValue(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        return t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(decimal) || t == typeof(TimeSpan) || t == typeof(Uri)
               || t == typeof(DateTime) || t == typeof(DateTimeOffset) || t == typeof(Guid);
    }

    private static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1], previous[j]) + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
