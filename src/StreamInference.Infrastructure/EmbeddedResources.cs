namespace StreamInference.Infrastructure;

/// <summary>The schemas and Lua scripts built into this assembly (see the csproj's EmbeddedResource items).</summary>
public static class EmbeddedResources
{
    public static string Text(string name)
    {
        using var stream = typeof(EmbeddedResources).Assembly.GetManifestResourceStream(name)
                           ?? throw new InvalidOperationException($"Embedded resource {name} is missing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>An embedded Avro schema (schemas/*.avsc), parsed.</summary>
    public static global::Avro.Schema AvroSchema(string name) => global::Avro.Schema.Parse(Text(name));
}
