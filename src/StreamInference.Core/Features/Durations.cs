using System.Globalization;

namespace StreamInference.Core.Features;

/// <summary>Durations in feature definitions: an integer and a unit, e.g. <c>500ms</c>, <c>30s</c>, <c>5m</c>, <c>1h</c>, <c>30d</c>.</summary>
public static class Durations
{
    public static bool TryParseMillis(string? text, out long millis)
    {
        millis = 0;
        var t = text?.Trim();
        if (string.IsNullOrEmpty(t)) return false;
        var digits = 0;
        while (digits < t.Length && char.IsAsciiDigit(t[digits])) digits++;
        if (digits == 0 || !long.TryParse(t.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return false;
        long unit = t[digits..] switch
        {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => 0,
        };
        if (unit == 0 || n > long.MaxValue / unit) return false;
        millis = n * unit;
        return true;
    }

    /// <summary>The shortest exact spelling of a duration (inverse of <see cref="TryParseMillis"/>).</summary>
    public static string Format(long millis)
    {
        if (millis != 0)
        {
            if (millis % 86_400_000 == 0) return $"{millis / 86_400_000}d";
            if (millis % 3_600_000 == 0) return $"{millis / 3_600_000}h";
            if (millis % 60_000 == 0) return $"{millis / 60_000}m";
            if (millis % 1_000 == 0) return $"{millis / 1_000}s";
        }
        return $"{millis}ms";
    }

    /// <summary>Floor division that rounds toward negative infinity (bucket index of a timestamp).</summary>
    public static long FloorDiv(long a, long b)
    {
        var q = a / b;
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
    }
}
