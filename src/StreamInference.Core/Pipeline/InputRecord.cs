using StreamInference.Core.Offsets;

namespace StreamInference.Core.Pipeline;

/// <summary>
/// A consumed record as the pipeline sees it: raw bytes plus where it came from. Records of the consume
/// loop carry their partition's <see cref="PartitionOffsets"/> and their <see cref="Sequence"/> in it (completed
/// when the record's batch completes); records read from history carry a plain <see cref="SourcePartition"/>.
/// <see cref="Headers"/> are the record's headers (null when it has none), passed on to the dead-letter topic.
/// </summary>
public readonly record struct InputRecord(
    SourcePartition Partition,
    long Sequence,
    long Offset,
    byte[]? Key,
    byte[]? Value,
    long TimestampMs,
    IReadOnlyList<KeyValuePair<string, byte[]>>? Headers);

/// <summary>Reasons a record goes to the dead-letter topic (header <c>streaminference.dlq.reason</c>).</summary>
public static class DeadLetterReasons
{
    public const string EmptyValue = "empty-value";
    public const string WrongMagicByte = "wrong-magic-byte";
    public const string TruncatedHeader = "truncated-header";
    public const string UnknownSchemaId = "unknown-schema-id";
    public const string IncompatibleSchema = "incompatible-schema";
    public const string MalformedAvro = "malformed-avro";
    public const string MissingEntityKey = "missing-entity-key";
    public const string MissingEventId = "missing-event-id";
    public const string TooLarge = "too-large";
    public const string InvalidEventTime = "invalid-event-time";
    public const string ModelError = "model-error";
    public const string NonFiniteNumber = "non-finite-number";
    public const string RegistryUnavailable = "registry-unavailable";

    public static readonly string[] All =
    [
        EmptyValue, WrongMagicByte, TruncatedHeader, UnknownSchemaId, IncompatibleSchema,
        MalformedAvro, MissingEntityKey, MissingEventId, TooLarge, InvalidEventTime, ModelError, NonFiniteNumber,
        RegistryUnavailable,
    ];
}
