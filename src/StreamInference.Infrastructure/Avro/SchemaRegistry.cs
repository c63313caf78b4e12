using System.Collections.Concurrent;
using System.Net;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// <c>SchemaRegistry:*</c>: how the processor reaches a Confluent Schema Registry. Every setting maps onto
/// Confluent.SchemaRegistry's <see cref="SchemaRegistryConfig"/>; <see cref="Properties"/> passes any other
/// client property through (bearer auth, <c>schema.registry.latest.cache.ttl.secs</c>, …).
/// </summary>
public sealed class SchemaRegistryOptions
{
    /// <summary>Base URL, or several separated by commas (the client fails over between them). Environment: SCHEMA_REGISTRY_URL.</summary>
    public string Url { get; set; } = "";
    /// <summary>Optional "user:password" for HTTP basic auth (basic.auth.user.info); credentials in the URL work too.</summary>
    public string? BasicAuthUserInfo { get; set; }
    /// <summary>Timeout of one HTTP request (schema.registry.request.timeout.ms).</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>Attempts per URL for a request that got no answer, a timeout, 408, 429 or a 5xx (schema.registry.max.retries, which counts attempts).</summary>
    public int MaxAttempts { get; set; } = 5;
    /// <summary>First wait between attempts (schema.registry.retries.wait.ms); doubles up to <see cref="RetriesMaxWaitMs"/>.</summary>
    public int RetriesWaitMs { get; set; } = 200;
    /// <summary>Longest wait between attempts (schema.registry.retries.max.wait.ms).</summary>
    public int RetriesMaxWaitMs { get; set; } = 5_000;
    /// <summary>Schemas the client keeps (schema.registry.max.cached.schemas).</summary>
    public int MaxCachedSchemas { get; set; } = 1000;
    /// <summary>CA certificate (PEM) that signs the registry's certificate (schema.registry.ssl.ca.location).</summary>
    public string? SslCaLocation { get; set; }
    /// <summary>Client certificate keystore, PKCS#12, for mutual TLS (schema.registry.ssl.keystore.location).</summary>
    public string? SslKeystoreLocation { get; set; }
    public string? SslKeystorePassword { get; set; }
    /// <summary>Verify the registry's certificate (schema.registry.enable.ssl.certificate.verification). Never turn off in production.</summary>
    public bool EnableSslCertificateVerification { get; set; } = true;
    /// <summary>Further client properties by their Confluent names, e.g. <c>bearer.auth.credentials.source</c>.</summary>
    public Dictionary<string, string> Properties { get; set; } = [];

    /// <summary>
    /// Subjects of the schemas this process registers or looks up (the prediction and drift-report values,
    /// Avro prediction keys): Topic (<c>&lt;topic&gt;-value</c>, the default), Record (the record's full name) or
    /// TopicRecord (<c>&lt;topic&gt;-&lt;full name&gt;</c>), as Confluent's serializers name them.
    /// </summary>
    public SubjectNameStrategy SubjectNameStrategy { get; set; } = SubjectNameStrategy.Topic;
    /// <summary>Register the output schemas at start (auto.register.schemas). Off: they must be registered already, or start fails.</summary>
    public bool AutoRegisterSchemas { get; set; } = true;
    /// <summary>
    /// Write outputs with the subject's latest registered schema (use.latest.version) instead of the built-in one;
    /// the latest must be writable from a prediction (its other fields need defaults). Implies no registration.
    /// </summary>
    public bool UseLatestVersion { get; set; }

    /// <summary>
    /// The processor meets a schema id it has not cached while the registry is unreachable: Wait
    /// (default) retries with backoff and pauses consumption; DeadLetter sends the record to the
    /// dead-letter topic with reason registry-unavailable. Cached ids keep decoding either way.
    /// </summary>
    public RegistryPolicy OnUnavailable { get; set; } = RegistryPolicy.Wait;

    /// <summary>Configuration errors, one line each.</summary>
    public void Validate(List<string> errors)
    {
        var urls = Urls(Url);
        if (urls.Count == 0)
            errors.Add("SchemaRegistry:Url (env SCHEMA_REGISTRY_URL) is required.");
        foreach (var url in urls)
            if (!Uri.TryCreate(url, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https"))
                errors.Add($"SchemaRegistry:Url (env SCHEMA_REGISTRY_URL) must be absolute http(s) URLs, comma-separated (was '{Secrets.RedactText(url)}').");
        if (RequestTimeout <= TimeSpan.Zero || RequestTimeout > TimeSpan.FromMinutes(10))
            errors.Add($"SchemaRegistry:RequestTimeout must be above 0 and at most 00:10:00 (was {RequestTimeout}).");
        if (MaxAttempts is < 1 or > 100) errors.Add($"SchemaRegistry:MaxAttempts must be between 1 and 100 (was {MaxAttempts}).");
        if (RetriesWaitMs is < 0 or > 600_000) errors.Add($"SchemaRegistry:RetriesWaitMs must be between 0 and 600000 (was {RetriesWaitMs}).");
        if (RetriesMaxWaitMs < RetriesWaitMs || RetriesMaxWaitMs > 600_000)
            errors.Add($"SchemaRegistry:RetriesMaxWaitMs must be at least RetriesWaitMs and at most 600000 (was {RetriesMaxWaitMs}).");
        if (MaxCachedSchemas < 1) errors.Add($"SchemaRegistry:MaxCachedSchemas must be at least 1 (was {MaxCachedSchemas}).");
        if (SubjectNameStrategy is not (SubjectNameStrategy.Topic or SubjectNameStrategy.Record or SubjectNameStrategy.TopicRecord)) errors.Add($"SchemaRegistry:SubjectNameStrategy must be Topic, Record or TopicRecord (was {SubjectNameStrategy}).");
        if (!Enum.IsDefined(OnUnavailable)) errors.Add($"SchemaRegistry:OnUnavailable must be Wait or DeadLetter (was {OnUnavailable}).");
        if (errors.Count > 0) return;
        try
        {
            // The client checks its configuration (unknown schema.registry.* keys, values, auth combinations) when built; it connects later.
            new CachedSchemaRegistryClient(ToConfig()).Dispose();
        }
        catch (Exception e) when (e is ArgumentException or FormatException or UriFormatException or InvalidOperationException)
        {
            errors.Add($"SchemaRegistry: the Confluent client refuses this configuration: {Secrets.RedactText(e.Message)}");
        }
    }

    private static List<string> Urls(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();

    /// <summary>The Confluent client configuration. Credentials in a URL become basic auth and leave the URL.</summary>
    public SchemaRegistryConfig ToConfig()
    {
        string? urlUserInfo = null;
        var urls = new List<string>();
        foreach (var url in Urls(Url))
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var u))
            {
                urls.Add(url);
                continue;
            }
            if (u.UserInfo.Length > 0) urlUserInfo ??= Uri.UnescapeDataString(u.UserInfo);
            urls.Add(new UriBuilder(u) { UserName = "", Password = "" }.Uri.ToString().TrimEnd('/'));
        }
        var config = new SchemaRegistryConfig
        {
            Url = string.Join(",", urls),
            RequestTimeoutMs = (int)Math.Ceiling(RequestTimeout.TotalMilliseconds),
            MaxRetries = MaxAttempts,
            RetriesWaitMs = RetriesWaitMs,
            RetriesMaxWaitMs = RetriesMaxWaitMs,
            MaxCachedSchemas = MaxCachedSchemas,
            EnableSslCertificateVerification = EnableSslCertificateVerification,
        };
        if (!string.IsNullOrEmpty(SslCaLocation)) config.SslCaLocation = SslCaLocation;
        if (!string.IsNullOrEmpty(SslKeystoreLocation)) config.SslKeystoreLocation = SslKeystoreLocation;
        if (!string.IsNullOrEmpty(SslKeystorePassword)) config.SslKeystorePassword = SslKeystorePassword;
        var userInfo = string.IsNullOrEmpty(BasicAuthUserInfo) ? urlUserInfo : BasicAuthUserInfo;
        if (!string.IsNullOrEmpty(userInfo))
        {
            config.BasicAuthCredentialsSource = AuthCredentialsSource.UserInfo;
            config.BasicAuthUserInfo = userInfo;
        }
        foreach (var (key, value) in Properties) config.Set(key, value);
        return config;
    }

    /// <summary>
    /// The longest one client call can take when nothing answers: every attempt timing out, plus the waits
    /// between them, for each URL.
    /// </summary>
    public TimeSpan CallBound()
    {
        var waits = 0L;
        for (var i = 0; i < MaxAttempts - 1; i++) waits += Math.Min(RetriesMaxWaitMs, (long)RetriesWaitMs << Math.Min(i, 20));
        return (RequestTimeout * MaxAttempts + TimeSpan.FromMilliseconds(waits)) * Math.Max(1, Urls(Url).Count);
    }
}

public enum RegistryPolicy
{
    Wait,
    DeadLetter,
}

/// <summary>
/// What the processor needs from a schema registry, in Apache.Avro terms: writer schemas by id (parsed once,
/// with their references) and registered subjects' ids. <see cref="AvroSchemaRegistry"/> is the one
/// implementation, over Confluent's client; tests of pure logic substitute an in-memory one.
/// </summary>
public interface IAvroSchemaRegistry
{
    /// <summary>
    /// The Avro schema with this id. Throws Confluent's <see cref="SchemaRegistryException"/> for the registry's
    /// answers (40403 unknown id) and <see cref="HttpRequestException"/> when it did not answer.
    /// </summary>
    Task<AvroSchema> GetSchemaAsync(int id, CancellationToken cancellationToken);

    /// <summary>Registers (or finds) <paramref name="schema"/> under <paramref name="subject"/> and returns its id.</summary>
    Task<int> RegisterAsync(string subject, AvroSchema schema, CancellationToken cancellationToken);

    /// <summary>The id of <paramref name="schema"/> if it is registered under <paramref name="subject"/>, without registering it.</summary>
    Task<int> LookupAsync(string subject, AvroSchema schema, CancellationToken cancellationToken);

    /// <summary>The latest version registered under <paramref name="subject"/>: its id and schema.</summary>
    Task<(int Id, AvroSchema Schema)> GetLatestAsync(string subject, CancellationToken cancellationToken);
}

/// <summary>
/// Confluent.SchemaRegistry's <see cref="CachedSchemaRegistryClient"/> (URL failover, basic/bearer auth, TLS,
/// retries, caching) seen as Avro schemas: each id is parsed once, references resolved with
/// <see cref="AvroUtils.ResolveNamedSchema"/>, and kept (ids are immutable).
/// </summary>
public sealed class AvroSchemaRegistry : IAvroSchemaRegistry, IDisposable
{
    private readonly ConcurrentDictionary<int, AvroSchema> _parsed = new();
    private readonly bool _ownsClient;

    public AvroSchemaRegistry(SchemaRegistryOptions options)
        : this(new CachedSchemaRegistryClient(options.ToConfig()), ownsClient: true) => CallBound = options.CallBound();

    public AvroSchemaRegistry(ISchemaRegistryClient client, bool ownsClient = false)
    {
        Client = client;
        _ownsClient = ownsClient;
    }

    /// <summary>The Confluent client underneath (for Confluent's serializers and deserializers).</summary>
    public ISchemaRegistryClient Client { get; }

    /// <summary>The longest one call can take when the registry does not answer (<see cref="SchemaRegistryOptions.CallBound"/>).</summary>
    public TimeSpan CallBound { get; } = TimeSpan.FromSeconds(10);

    public async Task<AvroSchema> GetSchemaAsync(int id, CancellationToken cancellationToken)
    {
        if (_parsed.TryGetValue(id, out var cached)) return cached;
        var schema = await Client.GetSchemaAsync(id).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (schema.SchemaType != SchemaType.Avro)
            throw new SchemaRegistryException($"Schema {id} is {schema.SchemaType}, not AVRO.", HttpStatusCode.UnprocessableEntity, RegistryErrors.InvalidSchema);
        return _parsed.GetOrAdd(id, await ParseAsync(schema, cancellationToken).ConfigureAwait(false));
    }

    private async Task<AvroSchema> ParseAsync(Schema schema, CancellationToken ct)
    {
        if (schema.References is not { Count: > 0 }) return AvroSchema.Parse(schema.SchemaString);
        var names = await AvroUtils.ResolveNamedSchema(schema, Client).WaitAsync(ct).ConfigureAwait(false);
        return AvroSchema.Parse(schema.SchemaString, names);
    }

    public Task<int> RegisterAsync(string subject, AvroSchema schema, CancellationToken cancellationToken) =>
        Client.RegisterSchemaAsync(subject, new Schema(schema.ToString(), SchemaType.Avro)).WaitAsync(cancellationToken);

    public async Task<int> LookupAsync(string subject, AvroSchema schema, CancellationToken cancellationToken)
    {
        var found = await Client.LookupSchemaAsync(subject, new Schema(schema.ToString(), SchemaType.Avro), ignoreDeletedSchemas: true)
            .WaitAsync(cancellationToken).ConfigureAwait(false);
        return found.Id;
    }

    public async Task<(int Id, AvroSchema Schema)> GetLatestAsync(string subject, CancellationToken cancellationToken)
    {
        var latest = await Client.GetLatestSchemaAsync(subject).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (latest.SchemaType != SchemaType.Avro)
            throw new SchemaRegistryException($"The latest schema of subject '{subject}' is {latest.SchemaType}, not AVRO.", HttpStatusCode.UnprocessableEntity, RegistryErrors.InvalidSchema);
        return (latest.Id, _parsed.GetOrAdd(latest.Id, await ParseAsync(latest, cancellationToken).ConfigureAwait(false)));
    }

    public void Dispose()
    {
        if (_ownsClient) Client.Dispose();
    }
}

/// <summary>Confluent's error codes, and which failures of a registry call may pass (the registry comes back).</summary>
public static class RegistryErrors
{
    public const int SubjectNotFound = 40401;
    public const int VersionNotFound = 40402;
    public const int SchemaNotFound = 40403;
    public const int InvalidSchema = 42201;

    /// <summary>
    /// No answer (connection refused, timeouts: the client retries them, then throws <see cref="HttpRequestException"/>),
    /// or an answer that is not about the request (5xx, 401/403, 408, 429): retry later. A cancellation is ours
    /// (shutdown), never unavailability.
    /// </summary>
    public static bool IsUnavailable(Exception e) => e switch
    {
        SchemaRegistryException r => !IsDefinitive(r),
        HttpRequestException => true,
        AggregateException { InnerExceptions.Count: > 0 } a => a.InnerExceptions.All(IsUnavailable),
        _ => false,
    };

    /// <summary>The registry's answer about the request itself: unknown subject, version or id; invalid schema; incompatible.</summary>
    public static bool IsDefinitive(SchemaRegistryException e) =>
        e.Status is HttpStatusCode.NotFound or HttpStatusCode.UnprocessableEntity or HttpStatusCode.Conflict or HttpStatusCode.BadRequest;

    /// <summary>True when the registry says the schema id does not exist.</summary>
    public static bool IsUnknownSchema(Exception e) =>
        e is SchemaRegistryException r && (r.ErrorCode == SchemaNotFound || (r.Status == HttpStatusCode.NotFound && r.ErrorCode is not (SubjectNotFound or VersionNotFound)));

    /// <summary>True when the registry refuses the schema as invalid (or not Avro).</summary>
    public static bool IsInvalidSchema(Exception e) =>
        e is SchemaRegistryException r && (r.ErrorCode == InvalidSchema || r.Status == HttpStatusCode.UnprocessableEntity);
}
