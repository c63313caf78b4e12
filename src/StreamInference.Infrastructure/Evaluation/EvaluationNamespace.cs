using System.IO.Hashing;
using System.Text;

namespace StreamInference.Infrastructure.Evaluation;

/// <summary>
/// The short namespace of an evaluation in Redis: 8 hex digits of the xxHash64 of its consumer group. Two evaluations
/// (another group over the same topics, a staging one on the same Redis) never share a join entry, a window or a clock;
/// a new group starts a fresh evaluation. 8 characters keep the per-event keys short.
/// </summary>
public static class EvaluationNamespace
{
    public static string Of(string group) => XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(group)).ToString("x16", System.Globalization.CultureInfo.InvariantCulture)[..8];
}
