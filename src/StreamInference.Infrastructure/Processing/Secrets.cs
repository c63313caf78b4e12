using System.Text.RegularExpressions;

namespace StreamInference.Infrastructure.Processing;

/// <summary>
/// Keeps credentials out of logs, error messages and printed configuration: values of secret-looking
/// keys (passwords, SASL JAAS configs, tokens, private keys, basic-auth user info) become "****",
/// and so do the password parts of URLs (user:password@host) and of Redis configuration strings
/// (password=…).
/// </summary>
public static partial class Secrets
{
    public const string Mask = "****";

    /// <summary>True for configuration keys whose values are credentials (e.g. Kafka:Consumer:SaslPassword, sasl.password, ssl.key.pem).</summary>
    public static bool IsSecretKey(string key) => SecretKey().IsMatch(key);

    /// <summary>The value as it may be shown for <paramref name="key"/>.</summary>
    public static string? Redact(string key, string? value)
    {
        if (value is null) return null;
        if (IsSecretKey(key)) return value.Length == 0 ? value : Mask;
        return RedactText(value);
    }

    /// <summary>Masks URL user info passwords and password=… pairs inside free text (a URL, a Redis configuration string, a message).</summary>
    public static string RedactText(string text)
    {
        text = UrlPassword().Replace(text, m => $"{m.Groups[1].Value}{m.Groups[2].Value}:{Mask}@");
        return PasswordPair().Replace(text, m => $"{m.Groups[1].Value}={Mask}");
    }

    [GeneratedRegex(@"(password|passwd|secret|token|jaas|credential|oauthbearer\.config|basicauthuserinfo|basic\.auth\.user\.info|key\.pem|keystore|private[._]?key|apikey|api[._]key)", RegexOptions.IgnoreCase)]
    private static partial Regex SecretKey();

    // scheme://user:password@ → scheme://user:****@
    [GeneratedRegex(@"([a-z][a-z0-9+.-]*://)([^:/@\s]*):([^@/\s]+)@", RegexOptions.IgnoreCase)]
    private static partial Regex UrlPassword();

    // password=…  (Redis configuration strings, SASL JAAS fragments); up to a comma, space or quote
    [GeneratedRegex(@"\b(password|sasl\.password|pwd)\s*=\s*(""[^""]*""|[^,\s;]+)", RegexOptions.IgnoreCase)]
    private static partial Regex PasswordPair();
}

/// <summary>The effective settings as Section:Key = value lines (defaults included), credentials masked.</summary>
public static class ConfigurationPrinter
{
    public static IEnumerable<string> Lines(ProcessorOptions options)
    {
        foreach (var section in typeof(ProcessorOptions).GetProperties())
        {
            var value = section.GetValue(options);
            if (value is null) continue;
            foreach (var line in Flatten(section.Name, value)) yield return line;
        }
    }

    private static IEnumerable<string> Flatten(string prefix, object value)
    {
        if (value is Confluent.Kafka.Config kafka)
        {
            // librdkafka property names, as the client receives them (e.g. sasl.password).
            foreach (var (k, v) in kafka.OrderBy(p => p.Key, StringComparer.Ordinal))
                yield return $"{prefix}:{k} = {Secrets.Redact(k, v)}";
            yield break;
        }
        foreach (var p in value.GetType().GetProperties().Where(p => p.GetIndexParameters().Length == 0))
        {
            var v = p.GetValue(value);
            var key = $"{prefix}:{p.Name}";
            if (v is Confluent.Kafka.Config) foreach (var line in Flatten(key, v)) yield return line;
            else if (v is IDictionary<string, string> map)
            {
                foreach (var (k, item) in map.OrderBy(e => e.Key, StringComparer.Ordinal))
                    yield return $"{key}:{k} = {Secrets.Redact($"{key}:{k}", item)}";
            }
            else if (v is null || v is string || v.GetType().IsPrimitive || v is Enum || v is TimeSpan || v is decimal)
                yield return $"{key} = {Secrets.Redact(key, Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture))}";
        }
    }
}
