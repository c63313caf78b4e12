using System.Globalization;
using Avro;
using Avro.Generic;
using Avro.IO;
using Polly;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;
using StreamInference.Core.Resilience;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// Decodes Confluent-framed Avro events: the writer schema comes from the registry by id (cached), is
/// resolved against the reader schema from <c>schemas/</c>, and the fields the feature plan needs are
/// copied into the batch's slots by position. Any record that cannot be decoded becomes a dead letter
/// with its reason; nothing throws out of here except an unreachable registry.
/// </summary>
public sealed class AvroEventDecoder : IEventDecoder
{
    private static readonly DateTime Epoch = DateTime.UnixEpoch;
    /// <summary>2200-01-01T00:00:00Z: event times beyond it (or before 1970) are dead-lettered.</summary>
    public const double MaxEventTimeMs = 7_258_118_400_000;
    private readonly IAvroSchemaRegistry _registry;
    private readonly RecordSchema _reader;
    private readonly FeaturePlan _plan;
    private readonly int _maxMessageBytes;
    private readonly int _idPos, _keyPos, _timePos;
    private readonly int[] _numericPos;
    private readonly EventFieldKind[] _numericKinds;
    private readonly string[] _numericNames;
    private readonly int[] _textPos;
    // Written only by the batch stage (single reader); no locking needed.
    private readonly Dictionary<int, DatumReader<GenericRecord>> _readers = [];
    // Schema ids the registry answered definitively about (ids are never reused): the dead-letter reason and detail.
    private readonly Dictionary<int, (string Reason, string Detail)> _rejected = [];
    private GenericRecord? _reuse;

    /// <summary>
    /// Registry unreachable (or 5xx) while resolving a schema id not yet cached: false (Wait) retries
    /// with backoff, which backpressures the consumer; true dead-letters the record with reason
    /// registry-unavailable (its id is tried again for the next record). Cached ids never need the registry.
    /// </summary>
    public bool DeadLetterWhenRegistryUnavailable { get; init; }

    /// <summary>Called on each failed registry attempt under the Wait policy (metrics, logs).</summary>
    public Action<Exception>? OnRegistryRetry { get; init; }

    /// <summary>
    /// DeadLetter policy: once registry calls keep failing (a circuit breaker: at least two, and at least half
    /// of them), how long uncached ids are dead-lettered without asking it before the next probe.
    /// </summary>
    public int RegistryProbeIntervalMs { get; init; } = 5000;

    /// <summary>
    /// DeadLetter policy: the longest one registry call can take, the client's own retries included (its
    /// attempts × request timeout + backoff). The breaker judges failures over two such calls plus the probe
    /// interval, so that two failures in a row open it even when each took the client's whole budget.
    /// </summary>
    public TimeSpan RegistryCallBound { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The clock of the registry retries and breaker.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    // Built on first use (after the init properties): Wait = retry until the registry answers;
    // DeadLetter = no waiting, and a breaker that stops asking while it keeps failing.
    private ResiliencePipeline? _registryCalls;

    public AvroEventDecoder(IAvroSchemaRegistry registry, AvroSchema readerSchema, FeaturePlan plan, int maxMessageBytes = 1 << 20)
    {
        _registry = registry;
        _reader = readerSchema as RecordSchema
                  ?? throw new ArgumentException($"The reader schema must be an Avro record, not {readerSchema.Tag}.", nameof(readerSchema));
        _plan = plan;
        _maxMessageBytes = maxMessageBytes;
        _idPos = Position(plan.IdField, "event.idField");
        _keyPos = Position(plan.EntityKeyField, "event.entityKeyField");
        _timePos = Position(plan.TimeField, "event.timeField");
        _numericPos = new int[plan.NumericFields.Count];
        _numericKinds = new EventFieldKind[plan.NumericFields.Count];
        _numericNames = new string[plan.NumericFields.Count];
        foreach (var f in plan.NumericFields)
        {
            _numericPos[f.Slot] = Position(f.Name, $"feature field '{f.Name}'");
            _numericKinds[f.Slot] = f.Kind;
            _numericNames[f.Slot] = f.Name;
        }
        _textPos = new int[plan.TextFields.Count];
        foreach (var f in plan.TextFields) _textPos[f.Slot] = Position(f.Name, $"feature field '{f.Name}'");
    }

    private int Position(string field, string usedBy)
    {
        if (!_reader.TryGetField(field, out var f))
            throw new FeatureDefinitionException(
                $"Feature set '{_plan.Name}' v{_plan.Version}: {usedBy} names '{field}', which is not a field of reader schema {_reader.Fullname}.");
        return f.Pos;
    }

    public async ValueTask DecodeAsync(EventBatch batch, CancellationToken cancellationToken)
    {
        for (var row = 0; row < batch.Count; row++)
        {
            var value = batch.Records[row].Value;
            var status = ConfluentWireFormat.TryReadHeader(value, out var schemaId);
            if (status != WireHeaderStatus.Ok)
            {
                batch.DeadLetter(row, status switch
                {
                    WireHeaderStatus.Empty => DeadLetterReasons.EmptyValue,
                    WireHeaderStatus.WrongMagicByte => DeadLetterReasons.WrongMagicByte,
                    _ => DeadLetterReasons.TruncatedHeader,
                }, status == WireHeaderStatus.WrongMagicByte ? $"first byte 0x{value![0]:x2}, expected 0x00" : $"{value?.Length ?? 0} bytes");
                continue;
            }
            if (value!.Length > _maxMessageBytes)
            {
                batch.DeadLetter(row, DeadLetterReasons.TooLarge, $"{value.Length} bytes > limit {_maxMessageBytes}");
                continue;
            }
            if (!_readers.TryGetValue(schemaId, out var reader))
            {
                if (_rejected.TryGetValue(schemaId, out var rejection))
                {
                    batch.DeadLetter(row, rejection.Reason, rejection.Detail);
                    continue;
                }
                reader = await ResolveAsync(schemaId, cancellationToken).ConfigureAwait(false);
                if (reader is null && !_rejected.ContainsKey(schemaId))
                {
                    batch.DeadLetter(row, DeadLetterReasons.RegistryUnavailable, $"schema {schemaId} could not be fetched: the registry is unavailable");
                    continue;
                }
                if (reader is null)
                {
                    row--; // re-run this row: it now hits the rejected cache with the reason
                    continue;
                }
            }
            DecodeRow(batch, row, value, reader);
        }
    }

    private async Task<DatumReader<GenericRecord>?> ResolveAsync(int schemaId, CancellationToken ct)
    {
        AvroSchema writer;
        try
        {
            _registryCalls ??= DeadLetterWhenRegistryUnavailable
                ? Policies.RetryThenBreak(null, TimeSpan.FromMilliseconds(RegistryProbeIntervalMs), Backoffs.RegistryWait with { MaxRetries = 0 }, IsUnavailable, Time,
                    window: 2 * RegistryCallBound)
                : Policies.Retry(Backoffs.RegistryWait, IsUnavailable, Time, (e, _, _) => OnRegistryRetry?.Invoke(e));
            writer = await _registryCalls.ExecuteAsync(static (s, token) => new ValueTask<AvroSchema>(s.Registry.GetSchemaAsync(s.Id, token)),
                (Registry: _registry, Id: schemaId), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (DeadLetterWhenRegistryUnavailable && (IsUnavailable(e) || Policies.IsDegraded(e)))
        {
            return null;   // dead-lettered as registry-unavailable; the id is asked again for a later record
        }
        catch (Exception e) when (RegistryErrors.IsUnknownSchema(e))
        {
            // Unknown ids stay unknown for this process (ids are never reused by a registry).
            return Reject(schemaId, DeadLetterReasons.UnknownSchemaId, $"unknown schema id {schemaId}");
        }
        catch (SchemaParseException e)
        {
            return Reject(schemaId, DeadLetterReasons.IncompatibleSchema, $"incompatible: schema {schemaId} does not parse: {e.Message}");
        }
        catch (Exception e) when (RegistryErrors.IsInvalidSchema(e))
        {
            // The registry's definitive answer (not Avro, unprocessable): the id cannot be used by this reader.
            return Reject(schemaId, DeadLetterReasons.IncompatibleSchema, $"incompatible: schema {schemaId}: {e.Message}");
        }
        // One-sided logical types (a plain long where the reader has timestamp-millis) resolve by their underlying type.
        if ((writer is RecordSchema record ? LogicalTypeResolution.Align(record, _reader) : null) is not var (alignedWriter, alignedReader))
            return Reject(schemaId, DeadLetterReasons.IncompatibleSchema, $"incompatible: reader {_reader.Fullname} cannot read writer schema {schemaId} ({writer.Fullname})");
        var reader = new GenericDatumReader<GenericRecord>(alignedWriter, alignedReader);
        _readers[schemaId] = reader;
        return reader;
    }

    /// <summary>Anything but the registry's definitive answer about the id (unreachable, 5xx, auth, rate limit): it may come back.</summary>
    private static bool IsUnavailable(Exception e) => RegistryErrors.IsUnavailable(e);

    private DatumReader<GenericRecord>? Reject(int schemaId, string reason, string detail)
    {
        _rejected[schemaId] = (reason, detail);
        return null;
    }

    private void DecodeRow(EventBatch batch, int row, byte[] value, DatumReader<GenericRecord> reader)
    {
        GenericRecord record;
        try
        {
            using var stream = new MemoryStream(value, ConfluentWireFormat.HeaderSize, value.Length - ConfluentWireFormat.HeaderSize, writable: false);
            record = reader.Read(_reuse!, new BinaryDecoder(stream));
            _reuse = record;
        }
        catch (Exception e) when (e is AvroException or EndOfStreamException or IOException or InvalidCastException or ArgumentException or OverflowException or IndexOutOfRangeException)
        {
            _reuse = null; // a half-filled record must not leak into the next one
            batch.DeadLetter(row, DeadLetterReasons.MalformedAvro, e.Message);
            return;
        }

        var key = AsText(record.GetValue(_keyPos));
        if (string.IsNullOrEmpty(key))
        {
            batch.DeadLetter(row, DeadLetterReasons.MissingEntityKey, $"field '{_plan.EntityKeyField}' is null or empty");
            return;
        }
        var id = AsText(record.GetValue(_idPos));
        if (string.IsNullOrEmpty(id))
        {
            batch.DeadLetter(row, DeadLetterReasons.MissingEventId, $"field '{_plan.IdField}' is null or empty");
            return;
        }
        batch.EntityKeys[row] = key;
        batch.EventIds[row] = id;
        var t = AsNumber(record.GetValue(_timePos));
        var time = double.IsFinite(t) ? t : batch.Records[row].TimestampMs;
        if (time is < 0 or > MaxEventTimeMs)
        {
            batch.DeadLetter(row, DeadLetterReasons.InvalidEventTime, $"field '{_plan.TimeField}' = {time.ToString(CultureInfo.InvariantCulture)} ms is outside 1970..2200");
            return;
        }
        batch.EventTimesMs[row] = (long)time;

        var numerics = batch.NumericRow(row);
        for (var i = 0; i < _numericPos.Length; i++)
        {
            var raw = record.GetValue(_numericPos[i]);
            var number = AsNumber(raw);
            // null is "missing" (the feature takes its default); NaN or ±∞ sent as a value is bad input.
            if (raw is double or float && !double.IsFinite(number))
            {
                batch.DeadLetter(row, DeadLetterReasons.NonFiniteNumber,
                    $"field '{_numericNames[i]}' = {number.ToString(CultureInfo.InvariantCulture)}");
                return;
            }
            numerics[i] = number;
        }
        var texts = batch.TextRow(row);
        for (var i = 0; i < _textPos.Length; i++) texts[i] = AsText(record.GetValue(_textPos[i]));
    }

    private static double AsNumber(object? v) => v switch
    {
        null => double.NaN,
        double d => d,
        float f => f,
        int i => i,
        long l => l,
        bool b => b ? 1.0 : 0.0,
        DateTime dt => (dt.ToUniversalTime() - Epoch).TotalMilliseconds,
        DateTimeOffset dto => dto.ToUnixTimeMilliseconds(),
        _ => double.NaN,
    };

    private static string? AsText(object? v) => v switch
    {
        null => null,
        string s => s,
        GenericEnum e => e.Value,
        int i => i.ToString(CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        _ => null,
    };
}
