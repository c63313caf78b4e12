using System.Buffers.Binary;

namespace StreamInference.Infrastructure.Avro;

public enum WireHeaderStatus { Ok, Empty, TooShort, WrongMagicByte }

/// <summary>
/// The Confluent Schema Registry framing: magic byte 0, 4-byte big-endian schema id, then the Avro
/// binary body.
/// </summary>
public static class ConfluentWireFormat
{
    public const byte MagicByte = 0;
    public const int HeaderSize = 5;

    public static WireHeaderStatus TryReadHeader(ReadOnlySpan<byte> payload, out int schemaId)
    {
        schemaId = 0;
        if (payload.IsEmpty) return WireHeaderStatus.Empty;
        if (payload[0] != MagicByte) return WireHeaderStatus.WrongMagicByte;
        if (payload.Length < HeaderSize) return WireHeaderStatus.TooShort;
        schemaId = BinaryPrimitives.ReadInt32BigEndian(payload[1..]);
        return WireHeaderStatus.Ok;
    }

    public static void WriteHeader(Span<byte> destination, int schemaId)
    {
        if (destination.Length < HeaderSize) throw new ArgumentException("Destination is shorter than the 5-byte header.", nameof(destination));
        destination[0] = MagicByte;
        BinaryPrimitives.WriteInt32BigEndian(destination[1..], schemaId);
    }

    /// <summary>A generic Avro record in the wire format under <paramref name="schemaId"/> (low-volume records: reports, labels, test events).</summary>
    public static byte[] Frame(global::Avro.Generic.GenericDatumWriter<global::Avro.Generic.GenericRecord> writer, global::Avro.Generic.GenericRecord record, int schemaId)
    {
        using var stream = new MemoryStream();
        Span<byte> header = stackalloc byte[HeaderSize];
        WriteHeader(header, schemaId);
        stream.Write(header);
        writer.Write(record, new global::Avro.IO.BinaryEncoder(stream));
        return stream.ToArray();
    }
}
