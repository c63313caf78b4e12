using System.IO.Hashing;
using System.Text;

namespace StreamInference.Core.Deployment;

/// <summary>
/// Sticky assignment of entities to a share (the canary arm, a shadow's sample): a pure function of the entity key
/// and a salt, so the same entities are chosen after a restart, on every member of the consumer group, and in a
/// replay. The hash is xxHash64 of the key's UTF-8 bytes, seeded with xxHash64 of the salt's UTF-8 bytes (seed 0);
/// its top 53 bits as a fraction of 2^53 below the share put the entity in. Any tool with xxHash64 reproduces it.
/// </summary>
public sealed class EntitySampler
{
    private readonly long _seed;
    private readonly double _share;

    public EntitySampler(string salt, double share)
    {
        if (share is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(share), "The share must be within [0, 1].");
        _seed = unchecked((long)XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(salt)));
        _share = share;
        Salt = salt;
    }

    public string Salt { get; }
    public double Share => _share;

    /// <summary>Where the entity falls in [0, 1): below <see cref="Share"/> it is in.</summary>
    public double Position(ReadOnlySpan<byte> entityKeyUtf8) =>
        (XxHash64.HashToUInt64(entityKeyUtf8, _seed) >> 11) * (1.0 / (1L << 53));

    public bool Contains(ReadOnlySpan<byte> entityKeyUtf8) => _share >= 1 || Position(entityKeyUtf8) < _share;

    public bool Contains(string entityKey)
    {
        if (_share >= 1) return true;
        Span<byte> buffer = stackalloc byte[256];
        var max = Encoding.UTF8.GetMaxByteCount(entityKey.Length);
        var bytes = max <= buffer.Length ? buffer : new byte[max];
        var n = Encoding.UTF8.GetBytes(entityKey, bytes);
        return Position(bytes[..n]) < _share;
    }
}
