using Newtonsoft.Json.Linq;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// Avro schema resolution compares underlying types; a logical type is an annotation on top (the specification:
/// a reader that does not know or does not share a logical type reads the underlying value). Apache.Avro's
/// <c>CanRead</c> instead refuses a field that is logical on one side only (e.g. a writer's plain <c>long</c> read
/// as the reader's <c>timestamp-millis</c>), where Confluent's compatibility checks and the official deserializer
/// accept it. This drops the annotation from the side that has it, field by field, for such pairs only; fields
/// that are logical on both sides keep theirs (millis against micros stays incompatible). The binary encoding does
/// not change, so the adjusted schemas read the same bytes.
/// </summary>
public static class LogicalTypeResolution
{
    /// <summary>
    /// Writer and reader schemas Apache.Avro can resolve, or null when they differ in more than one-sided logical
    /// annotations of top-level fields. Returns the inputs unchanged when they already resolve.
    /// </summary>
    public static (AvroSchema Writer, AvroSchema Reader)? Align(global::Avro.RecordSchema writer, global::Avro.RecordSchema reader)
    {
        if (reader.CanRead(writer)) return (writer, reader);
        var w = JObject.Parse(writer.ToString());
        var r = JObject.Parse(reader.ToString());
        var changed = false;
        foreach (var readerField in r["fields"]!.Children<JObject>())
        {
            var name = (string)readerField["name"]!;
            var writerField = w["fields"]!.Children<JObject>().FirstOrDefault(f => (string)f["name"]! == name);
            if (writerField is null) continue;
            var readerLogical = HasLogicalType(readerField["type"]!);
            var writerLogical = HasLogicalType(writerField["type"]!);
            if (readerLogical == writerLogical) continue;
            var annotated = readerLogical ? readerField : writerField;
            annotated["type"] = WithoutLogicalTypes(annotated["type"]!);
            changed = true;
        }
        if (!changed) return null;
        var alignedWriter = AvroSchema.Parse(w.ToString(Newtonsoft.Json.Formatting.None));
        var alignedReader = AvroSchema.Parse(r.ToString(Newtonsoft.Json.Formatting.None));
        return alignedReader.CanRead(alignedWriter) ? (alignedWriter, alignedReader) : null;
    }

    private static bool HasLogicalType(JToken type) => type switch
    {
        JObject o when o["type"] is JValue { Type: JTokenType.String } t && (string)t! is "record" or "enum" or "fixed" && o["logicalType"] is null => false,
        JObject o => o["logicalType"] is not null || (o["items"] is { } items && HasLogicalType(items)) || (o["values"] is { } values && HasLogicalType(values)),
        JArray branches => branches.Any(HasLogicalType),
        _ => false,
    };

    private static JToken WithoutLogicalTypes(JToken type) => type switch
    {
        JObject o when o["logicalType"] is not null && o["type"] is JValue { Type: JTokenType.String } underlying
                       && (string)underlying! is not ("fixed" or "record" or "enum") => underlying.DeepClone(),
        JObject o when o["logicalType"] is not null => Strip(o),
        JObject o when o["items"] is { } items => Replace(o, "items", WithoutLogicalTypes(items)),
        JObject o when o["values"] is { } values => Replace(o, "values", WithoutLogicalTypes(values)),
        JArray branches => new JArray(branches.Select(WithoutLogicalTypes)),
        _ => type.DeepClone(),
    };

    private static JObject Strip(JObject o)
    {
        var copy = (JObject)o.DeepClone();
        copy.Remove("logicalType");
        copy.Remove("precision");
        copy.Remove("scale");
        return copy;
    }

    private static JObject Replace(JObject o, string key, JToken value)
    {
        var copy = (JObject)o.DeepClone();
        copy[key] = value;
        return copy;
    }
}
