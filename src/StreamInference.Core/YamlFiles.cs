using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace StreamInference.Core;

/// <summary>The project's YAML files (feature sets, deployments): camelCase keys, unknown keys refused, errors as file:line:column.</summary>
internal static class YamlFiles
{
    private static readonly IDeserializer Yaml = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .Build();

    /// <summary>Reads <paramref name="yaml"/> as <typeparamref name="T"/>; a syntax or key error becomes <paramref name="error"/>'s exception, in one line.</summary>
    public static T? Deserialize<T>(string yaml, string sourceName, Func<string, Exception, Exception> error)
    {
        try
        {
            return Yaml.Deserialize<T>(yaml);
        }
        catch (YamlException e)
        {
            throw error($"{sourceName}:{e.Start.Line}:{e.Start.Column}: {e.InnerException?.Message ?? e.Message}", e);
        }
    }
}
