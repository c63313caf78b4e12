using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Polly;
using StreamInference.Core.Resilience;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

public sealed class SchemaRegistryOptions
{
    /// <summary>Base URL, e.g. http://localhost:8081. Environment: SCHEMA_REGISTRY_URL.</summary>
    public string Url { get; set; } = "";
    /// <summary>Optional "user:password" for HTTP basic auth (Confluent's basic.auth.user.info).</summary>
    public string? BasicAuthUserInfo { get; set; }
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>Attempts for requests that got no answer or a 5xx.</summary>
    public int MaxAttempts { get; set; } = 5;
    /// <summary>
    /// The processor meets a schema id it has not cached while the registry is unreachable: Wait
    /// (default) retries with backoff and pauses consumption; DeadLetter sends the record to the
    /// dead-letter topic with reason registry-unavailable. Cached ids keep decoding either way.
    /// </summary>
    public RegistryPolicy OnUnavailable { get; set; } = RegistryPolicy.Wait;
}

public enum RegistryPolicy
{
    Wait,
    DeadLetter,
}

/// <summary>
/// Confluent Schema Registry REST client on HttpClient. Schemas by id are cached forever (ids are
/// immutable); registrations are cached per subject and schema text.
/// </summary>
public sealed class SchemaRegistryClient : ISchemaRegistryClient, IDisposable
{
    private const string ContentType = "application/vnd.schemaregistry.v1+json";
    private readonly HttpClient _http;
    private readonly SchemaRegistryOptions _options;
    private readonly ConcurrentDictionary<int, AvroSchema> _byId = new();
    private readonly ConcurrentDictionary<(string Subject, string Schema), int> _registered = new();
    private readonly ResiliencePipeline<HttpResponseMessage> _requests;

    public SchemaRegistryClient(SchemaRegistryOptions options, HttpMessageHandler? handler = null)
    {
        if (!Uri.TryCreate(options.Url, UriKind.Absolute, out var baseUri) || (baseUri.Scheme != "http" && baseUri.Scheme != "https"))
            throw new ArgumentException($"SchemaRegistry:Url '{StreamInference.Infrastructure.Processing.Secrets.RedactText(options.Url)}' is not an absolute http(s) URL.", nameof(options));
        _options = options;
        // No answer, or a 5xx: retried with Backoffs.RegistryRequest up to MaxAttempts in all; the last 5xx is returned as the error.
        _requests = Policies.Retry<HttpResponseMessage>(Backoffs.RegistryRequest with { MaxRetries = Math.Max(0, options.MaxAttempts - 1) },
            static e => e is HttpRequestException or TimeoutException, static r => (int)r.StatusCode >= 500);
        _http = handler is null ? new HttpClient() : new HttpClient(handler);
        // Credentials in the URL (https://user:password@host, Confluent's basic.auth.credentials.source=URL)
        // become the basic-auth header unless BasicAuthUserInfo is set; they never stay in the address.
        var userInfo = string.IsNullOrEmpty(options.BasicAuthUserInfo) && baseUri.UserInfo.Length > 0
            ? Uri.UnescapeDataString(baseUri.UserInfo)
            : options.BasicAuthUserInfo;
        var address = new UriBuilder(baseUri) { UserName = "", Password = "" }.Uri;
        _http.BaseAddress = new Uri(address.ToString().TrimEnd('/') + "/");
        _http.Timeout = options.RequestTimeout;
        _http.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue(ContentType));
        if (!string.IsNullOrEmpty(userInfo))
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes(userInfo)));
    }

    public Uri BaseAddress => _http.BaseAddress!;

    /// <summary>The longest one call can take: every attempt timing out, plus the backoff between them.</summary>
    public TimeSpan CallBound => _options.RequestTimeout * Math.Max(1, _options.MaxAttempts)
                                 + TimeSpan.FromTicks(Enumerable.Range(1, Math.Max(0, _options.MaxAttempts - 1)).Sum(r => Backoffs.RegistryRequest.DelayBefore(r).Ticks));

    public bool TryGetCached(int id, out AvroSchema schema) => _byId.TryGetValue(id, out schema!);

    public async Task<AvroSchema> GetSchemaAsync(int id, CancellationToken cancellationToken)
    {
        if (_byId.TryGetValue(id, out var cached)) return cached;
        var body = await SendAsync<SchemaBody>(() => new HttpRequestMessage(HttpMethod.Get, $"schemas/ids/{id}"), cancellationToken).ConfigureAwait(false);
        if (body.SchemaType is not null && body.SchemaType != "AVRO")
            throw new SchemaRegistryException(200, SchemaRegistryException.InvalidSchema, $"Schema {id} is {body.SchemaType}, not AVRO.");
        var schema = AvroSchema.Parse(body.Schema);
        return _byId.GetOrAdd(id, schema);
    }

    public async Task<int> RegisterAsync(string subject, AvroSchema schema, CancellationToken cancellationToken)
    {
        var text = schema.ToString();
        if (_registered.TryGetValue((subject, text), out var known)) return known;
        var result = await SendAsync<IdBody>(() => new HttpRequestMessage(HttpMethod.Post, $"subjects/{Uri.EscapeDataString(subject)}/versions")
        {
            Content = JsonContent.Create(new SchemaBody { Schema = text }, RegistryJson.Default.SchemaBody, new MediaTypeHeaderValue(ContentType)),
        }, cancellationToken).ConfigureAwait(false);
        _registered[(subject, text)] = result.Id;
        _byId.TryAdd(result.Id, schema);
        return result.Id;
    }

    private async Task<T> SendAsync<T>(Func<HttpRequestMessage> request, CancellationToken ct)
    {
        HttpResponseMessage response;
        try
        {
            response = await _requests.ExecuteAsync(static async (s, token) =>
            {
                using var message = s.Request();
                try
                {
                    return await s.Http.SendAsync(message, token).ConfigureAwait(false);
                }
                catch (TaskCanceledException e) when (!token.IsCancellationRequested)
                {
                    throw new TimeoutException($"no answer within {s.Http.Timeout.TotalSeconds:0.#} s", e);
                }
            }, (Request: request, Http: _http), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutException)
        {
            throw new SchemaRegistryException(0, SchemaRegistryException.Unreachable,
                $"Schema registry at {_http.BaseAddress} did not answer after {_options.MaxAttempts} attempts: {e.Message}", e);
        }
        using (response)
        {
            if (response.IsSuccessStatusCode)
            {
                var info = (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)RegistryJson.Default.GetTypeInfo(typeof(T))!;
                return (await response.Content.ReadFromJsonAsync(info, ct).ConfigureAwait(false))!;
            }
            ErrorBody? error = null;
            try
            {
                error = await response.Content.ReadFromJsonAsync(RegistryJson.Default.ErrorBody, ct).ConfigureAwait(false);
            }
            catch (JsonException) { }
            var code = error?.ErrorCode ?? (int)response.StatusCode;
            throw new SchemaRegistryException((int)response.StatusCode, code,
                $"Schema registry answered {(int)response.StatusCode} ({code}): {error?.Message ?? response.ReasonPhrase}");
        }
    }

    public void Dispose() => _http.Dispose();
}

public sealed class SchemaBody
{
    [JsonPropertyName("schema")] public string Schema { get; set; } = "";
    [JsonPropertyName("schemaType")][JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? SchemaType { get; set; }
}

public sealed class IdBody
{
    [JsonPropertyName("id")] public int Id { get; set; }
}

public sealed class SubjectVersionBody
{
    [JsonPropertyName("subject")] public string Subject { get; set; } = "";
    [JsonPropertyName("version")] public int Version { get; set; }
    [JsonPropertyName("id")] public int Id { get; set; }
    [JsonPropertyName("schema")] public string Schema { get; set; } = "";
}

public sealed class CompatibilityBody
{
    [JsonPropertyName("is_compatible")] public bool IsCompatible { get; set; }
}

public sealed class ErrorBody
{
    [JsonPropertyName("error_code")] public int ErrorCode { get; set; }
    [JsonPropertyName("message")] public string Message { get; set; } = "";
}

[JsonSerializable(typeof(SchemaBody))]
[JsonSerializable(typeof(IdBody))]
[JsonSerializable(typeof(SubjectVersionBody))]
[JsonSerializable(typeof(CompatibilityBody))]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(int[]))]
public sealed partial class RegistryJson : JsonSerializerContext;
