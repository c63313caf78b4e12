using Avro.Generic;
using Avro.IO;
using Confluent.SchemaRegistry;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// The schema an output (prediction, drift report, Avro prediction key) is framed with, chosen the way
/// Confluent's serializers choose it: registered at start (auto.register.schemas, the default), looked up
/// (auto-registration off), or the subject's latest version (use.latest.version).
/// </summary>
public sealed record OutputSchema(string Subject, int Id, AvroSchema Schema, AvroSchema BuiltIn)
{
    /// <summary>The built-in schema is what the subject's schema says, so the built-in encoder's bytes are the output as they are.</summary>
    public bool IsBuiltIn { get; } = AvroSchemaForms.Same(Schema, BuiltIn);

    /// <summary>A transcoder from the built-in schema into <see cref="Schema"/> (null when they are the same); one per writer.</summary>
    public SchemaTranscoder? CreateTranscoder() => IsBuiltIn ? null : new SchemaTranscoder(BuiltIn, Schema);

    public static async Task<OutputSchema> ResolveAsync(IAvroSchemaRegistry registry, SchemaRegistryOptions options, string topic, bool isKey,
        AvroSchema builtIn, CancellationToken ct)
    {
        var subject = SubjectName(options.SubjectNameStrategy, topic, isKey, builtIn.Fullname);
        if (options.UseLatestVersion)
        {
            (int Id, AvroSchema Schema) latest;
            try
            {
                latest = await registry.GetLatestAsync(subject, ct).ConfigureAwait(false);
            }
            catch (SchemaRegistryException e) when (e.ErrorCode is RegistryErrors.SubjectNotFound or RegistryErrors.VersionNotFound)
            {
                throw new OutputSchemaException($"SchemaRegistry:UseLatestVersion is on, but subject '{subject}' has no registered version: register {builtIn.Fullname} there first.", e);
            }
            if (!AvroSchemaForms.Same(latest.Schema, builtIn) && !latest.Schema.CanRead(builtIn))
                throw new OutputSchemaException($"SchemaRegistry:UseLatestVersion: the latest schema of subject '{subject}' (id {latest.Id}) cannot be written from a {builtIn.Fullname}: " +
                                                "each field it adds needs a default, and no field may change type.");
            return new OutputSchema(subject, latest.Id, latest.Schema, builtIn);
        }
        if (options.AutoRegisterSchemas)
            return new OutputSchema(subject, await registry.RegisterAsync(subject, builtIn, ct).ConfigureAwait(false), builtIn, builtIn);
        try
        {
            return new OutputSchema(subject, await registry.LookupAsync(subject, builtIn, ct).ConfigureAwait(false), builtIn, builtIn);
        }
        catch (SchemaRegistryException e) when (e.ErrorCode is RegistryErrors.SubjectNotFound or RegistryErrors.SchemaNotFound)
        {
            throw new OutputSchemaException($"SchemaRegistry:AutoRegisterSchemas is off and {builtIn.Fullname} is not registered under subject '{subject}': " +
                                            "register it, turn auto-registration on, or set SchemaRegistry:UseLatestVersion.", e);
        }
    }

    /// <summary>The subject Confluent's serializers use for this strategy (Topic, Record, TopicRecord).</summary>
    public static string SubjectName(SubjectNameStrategy strategy, string topic, bool isKey, string recordFullName) => strategy switch
    {
        SubjectNameStrategy.Topic => $"{topic}-{(isKey ? "key" : "value")}",
        SubjectNameStrategy.Record => recordFullName,
        SubjectNameStrategy.TopicRecord => $"{topic}-{recordFullName}",
        _ => throw new ArgumentOutOfRangeException(nameof(strategy), strategy, "SchemaRegistry:SubjectNameStrategy must be Topic, Record or TopicRecord."),
    };
}

/// <summary>An output schema that cannot be used: a configuration problem, reported at start.</summary>
public sealed class OutputSchemaException(string message, Exception? inner = null) : Exception(message, inner);

public static class AvroSchemaForms
{
    /// <summary>Same Avro parsing canonical form: the same bytes on the wire.</summary>
    public static bool Same(AvroSchema a, AvroSchema b) =>
        ReferenceEquals(a, b) || global::Avro.SchemaNormalization.ToParsingForm(a) == global::Avro.SchemaNormalization.ToParsingForm(b);
}

/// <summary>
/// Re-encodes Confluent-framed records from one schema into another by Avro schema resolution (fields matched by
/// name, added fields take their defaults): how outputs follow a subject's latest schema when it is not the
/// built-in one. Not thread-safe: one per writer.
/// </summary>
public sealed class SchemaTranscoder(AvroSchema from, AvroSchema to)
{
    private readonly GenericDatumReader<object> _reader = new(from, to);
    private readonly GenericDatumWriter<object> _writer = new(to);
    private readonly MemoryStream _buffer = new();

    /// <summary>The record in <paramref name="framed"/> (header + body in the source schema), framed with <paramref name="schemaId"/> in the target schema.</summary>
    public byte[] Transcode(ReadOnlySpan<byte> framed, int schemaId)
    {
        object datum;
        using (var input = new MemoryStream(framed[ConfluentWireFormat.HeaderSize..].ToArray(), writable: false))
            datum = _reader.Read(null!, new BinaryDecoder(input));
        _buffer.SetLength(0);
        Span<byte> header = stackalloc byte[ConfluentWireFormat.HeaderSize];
        ConfluentWireFormat.WriteHeader(header, schemaId);
        _buffer.Write(header);
        _writer.Write(datum, new BinaryEncoder(_buffer));
        return _buffer.ToArray();
    }
}
