using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamInference.DevServices.SchemaRegistry;

/// <summary>Body of POST /subjects/{subject}/versions, POST /subjects/{subject} and the compatibility checks.</summary>
internal sealed class SchemaRequest
{
    [JsonPropertyName("schema")] public string? Schema { get; set; }
    [JsonPropertyName("schemaType")] public string? SchemaType { get; set; }
    [JsonPropertyName("references")] public List<SchemaReferenceBody>? References { get; set; }
    [JsonPropertyName("metadata")] public JsonElement? Metadata { get; set; }
    [JsonPropertyName("ruleSet")] public JsonElement? RuleSet { get; set; }
}

internal sealed class SchemaReferenceBody
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("subject")] public string Subject { get; set; } = "";
    [JsonPropertyName("version")] public int Version { get; set; }
}

internal sealed class ErrorBody
{
    [JsonPropertyName("error_code")] public int ErrorCode { get; set; }
    [JsonPropertyName("message")] public string Message { get; set; } = "";
}

internal sealed class IdBody
{
    [JsonPropertyName("id")] public int Id { get; set; }
}

/// <summary>GET /schemas/ids/{id}: schemaType is omitted for AVRO, references when there are none.</summary>
internal sealed class SchemaByIdBody
{
    [JsonPropertyName("schemaType")] public string? SchemaType { get; set; }
    [JsonPropertyName("schema")] public string Schema { get; set; } = "";
    [JsonPropertyName("references")] public List<SchemaReferenceBody>? References { get; set; }
}

internal sealed class SubjectVersionBody
{
    [JsonPropertyName("subject")] public string Subject { get; set; } = "";
    [JsonPropertyName("version")] public int Version { get; set; }
    [JsonPropertyName("id")] public int Id { get; set; }
    [JsonPropertyName("schemaType")] public string? SchemaType { get; set; }
    [JsonPropertyName("references")] public List<SchemaReferenceBody>? References { get; set; }
    [JsonPropertyName("schema")] public string Schema { get; set; } = "";
}

internal sealed class SubjectVersionRef
{
    [JsonPropertyName("subject")] public string Subject { get; set; } = "";
    [JsonPropertyName("version")] public int Version { get; set; }
}

internal sealed class CompatibilityCheckBody
{
    [JsonPropertyName("is_compatible")] public bool IsCompatible { get; set; }
    [JsonPropertyName("messages")] public List<string>? Messages { get; set; }
}

/// <summary>PUT /config bodies (request and answer) use "compatibility"; GET and DELETE answer "compatibilityLevel".</summary>
internal sealed class ConfigUpdateBody
{
    [JsonPropertyName("compatibility")] public string? Compatibility { get; set; }
}

internal sealed class ConfigBody
{
    [JsonPropertyName("compatibilityLevel")] public string CompatibilityLevel { get; set; } = "";
}

internal sealed class ModeBody
{
    [JsonPropertyName("mode")] public string? Mode { get; set; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SchemaRequest))]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(IdBody))]
[JsonSerializable(typeof(SchemaByIdBody))]
[JsonSerializable(typeof(SubjectVersionBody))]
[JsonSerializable(typeof(List<SubjectVersionBody>))]
[JsonSerializable(typeof(List<SubjectVersionRef>))]
[JsonSerializable(typeof(CompatibilityCheckBody))]
[JsonSerializable(typeof(ConfigUpdateBody))]
[JsonSerializable(typeof(ConfigBody))]
[JsonSerializable(typeof(ModeBody))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(List<int>))]
[JsonSerializable(typeof(int))]
internal sealed partial class RegistryJson : JsonSerializerContext
{
    /// <summary>
    /// The context the registry reads and writes with: quotes inside schema strings stay <c>\"</c> rather than
    /// <c>\u0022</c>, as a Confluent registry writes them.
    /// </summary>
    public static RegistryJson Wire { get; } = new(new JsonSerializerOptions
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    });
}
