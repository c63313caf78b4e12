using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Logging;
using AvroSchema = Avro.Schema;

namespace StreamInference.DevServices.SchemaRegistry;

/// <summary>
/// An in-memory Confluent-compatible schema registry (AVRO schemas) for development and tests: the REST API that
/// Confluent's clients and serializers use — schemas by id, subjects and versions, register and lookup, schema
/// references, compatibility levels and checks, modes, soft and permanent deletes — with Confluent's JSON shapes,
/// content type and error codes. docs/operations.md lists what it leaves out. Production points SchemaRegistry:Url
/// at a real registry.
/// </summary>
public sealed class DevSchemaRegistry : IAsyncDisposable
{
    /// <summary>The content type of every answer.</summary>
    public const string ContentType = "application/vnd.schemaregistry.v1+json";

    private static readonly string[] RequestContentTypes =
        [ContentType, "application/vnd.schemaregistry+json", "application/json", "application/octet-stream"];

    private readonly WebApplication _app;
    private readonly RegistryStore _store = new();

    private DevSchemaRegistry(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    /// <param name="preload">Subjects and schemas known before the first request, in this order (ids 1, 2, … as
    /// they were first registered): a restart of a registry with persistent storage, which keeps its ids.</param>
    public static async Task<DevSchemaRegistry> StartAsync(int port = 0, IEnumerable<(string Subject, AvroSchema Schema)>? preload = null,
        CancellationToken cancellationToken = default)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, port));
        var app = builder.Build();
        var registry = new DevSchemaRegistry(app);
        foreach (var (subject, schema) in preload ?? []) registry._store.Preload(subject, schema);
        app.Use(WriteErrors);
        app.UseStatusCodePages(WriteStatusError);
        registry.Map(app);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        registry.Url = app.Urls.First();
        return registry;
    }

    private void Map(IEndpointRouteBuilder app)
    {
        var store = _store;
        app.MapGet("/", () => Json(new Dictionary<string, string>(), RegistryJson.Wire.DictionaryStringString));

        app.MapGet("/schemas/types", () => Json(["AVRO"], RegistryJson.Wire.ListString));
        app.MapGet("/schemas/ids/{id:int}", (int id) => Json(store.GetById(id), RegistryJson.Wire.SchemaByIdBody));
        app.MapGet("/schemas/ids/{id:int}/schema", (int id) => Raw(store.GetTextById(id)));
        app.MapGet("/schemas/ids/{id:int}/versions", (int id, HttpRequest r) => Json(store.VersionsOfId(id, Flag(r, "deleted")), RegistryJson.Wire.ListSubjectVersionRef));
        app.MapGet("/schemas/ids/{id:int}/subjects", (int id, HttpRequest r) => Json(store.SubjectsOfId(id, Flag(r, "deleted")), RegistryJson.Wire.ListString));

        app.MapGet("/subjects", (HttpRequest r) => Json(store.Subjects(r.Query["subjectPrefix"].FirstOrDefault(), Flag(r, "deleted")), RegistryJson.Wire.ListString));
        app.MapGet("/subjects/{subject}/versions", (string subject, HttpRequest r) => Json(store.Versions(subject, Flag(r, "deleted")), RegistryJson.Wire.ListInt32));
        app.MapGet("/subjects/{subject}/versions/{version}", (string subject, string version, HttpRequest r) =>
            Json(store.GetVersion(subject, version, Flag(r, "deleted")), RegistryJson.Wire.SubjectVersionBody));
        app.MapGet("/subjects/{subject}/versions/{version}/schema", (string subject, string version, HttpRequest r) =>
            Raw(store.GetVersion(subject, version, Flag(r, "deleted")).Schema));
        app.MapGet("/subjects/{subject}/versions/{version}/referencedby", (string subject, string version) =>
            Json(store.ReferencedBy(subject, version), RegistryJson.Wire.ListInt32));
        app.MapPost("/subjects/{subject}/versions", async (string subject, HttpRequest r) =>
        {
            var body = await ReadAsync(r, RegistryJson.Wire.SchemaRequest).ConfigureAwait(false);
            return Json(new IdBody { Id = store.Register(subject, body) }, RegistryJson.Wire.IdBody);
        });
        app.MapPost("/subjects/{subject}", async (string subject, HttpRequest r) =>
        {
            var body = await ReadAsync(r, RegistryJson.Wire.SchemaRequest).ConfigureAwait(false);
            return Json(store.Lookup(subject, body, Flag(r, "deleted")), RegistryJson.Wire.SubjectVersionBody);
        });
        app.MapDelete("/subjects/{subject}", (string subject, HttpRequest r) => Json(store.DeleteSubject(subject, Flag(r, "permanent")), RegistryJson.Wire.ListInt32));
        app.MapDelete("/subjects/{subject}/versions/{version}", (string subject, string version, HttpRequest r) =>
            Json(store.DeleteVersion(subject, version, Flag(r, "permanent")), RegistryJson.Wire.Int32));

        app.MapPost("/compatibility/subjects/{subject}/versions/{version}", async (string subject, string version, HttpRequest r) =>
        {
            var body = await ReadAsync(r, RegistryJson.Wire.SchemaRequest).ConfigureAwait(false);
            return Json(store.CheckCompatibility(subject, version, body, Flag(r, "verbose")), RegistryJson.Wire.CompatibilityCheckBody);
        });
        app.MapPost("/compatibility/subjects/{subject}/versions", async (string subject, HttpRequest r) =>
        {
            var body = await ReadAsync(r, RegistryJson.Wire.SchemaRequest).ConfigureAwait(false);
            return Json(store.CheckCompatibility(subject, null, body, Flag(r, "verbose")), RegistryJson.Wire.CompatibilityCheckBody);
        });

        app.MapGet("/config", () => Json(store.GlobalConfig(), RegistryJson.Wire.ConfigBody));
        app.MapPut("/config", async (HttpRequest r) =>
            Json(store.SetGlobalConfig(await ReadAsync(r, RegistryJson.Wire.ConfigUpdateBody).ConfigureAwait(false)), RegistryJson.Wire.ConfigUpdateBody));
        app.MapDelete("/config", () => Json(store.ResetGlobalConfig(), RegistryJson.Wire.ConfigBody));
        app.MapGet("/config/{subject}", (string subject, HttpRequest r) => Json(store.SubjectConfig(subject, Flag(r, "defaultToGlobal")), RegistryJson.Wire.ConfigBody));
        app.MapPut("/config/{subject}", async (string subject, HttpRequest r) =>
            Json(store.SetSubjectConfig(subject, await ReadAsync(r, RegistryJson.Wire.ConfigUpdateBody).ConfigureAwait(false)), RegistryJson.Wire.ConfigUpdateBody));
        app.MapDelete("/config/{subject}", (string subject) => Json(store.DeleteSubjectConfig(subject), RegistryJson.Wire.ConfigBody));

        app.MapGet("/mode", () => Json(store.GlobalMode(), RegistryJson.Wire.ModeBody));
        app.MapPut("/mode", async (HttpRequest r) =>
            Json(store.SetGlobalMode(await ReadAsync(r, RegistryJson.Wire.ModeBody).ConfigureAwait(false)), RegistryJson.Wire.ModeBody));
        app.MapGet("/mode/{subject}", (string subject, HttpRequest r) => Json(store.SubjectMode(subject, Flag(r, "defaultToGlobal")), RegistryJson.Wire.ModeBody));
        app.MapPut("/mode/{subject}", async (string subject, HttpRequest r) =>
            Json(store.SetSubjectMode(subject, await ReadAsync(r, RegistryJson.Wire.ModeBody).ConfigureAwait(false)), RegistryJson.Wire.ModeBody));
        app.MapDelete("/mode/{subject}", (string subject) => Json(store.DeleteSubjectMode(subject), RegistryJson.Wire.ModeBody));
    }

    /// <summary>A boolean query parameter; .NET clients send "True"/"False", so case does not matter.</summary>
    private static bool Flag(HttpRequest request, string name) =>
        bool.TryParse(request.Query[name].FirstOrDefault(), out var value) && value;

    private static IResult Json<T>(T value, JsonTypeInfo<T> type, int status = 200) => Results.Json(value, type, ContentType, status);

    private static IResult Raw(string schema) => Results.Text(schema, ContentType);

    private static async Task<T?> ReadAsync<T>(HttpRequest request, JsonTypeInfo<T> type)
    {
        var mediaType = request.ContentType?.Split(';', 2)[0].Trim();
        if (!string.IsNullOrEmpty(mediaType) && !RequestContentTypes.Contains(mediaType, StringComparer.OrdinalIgnoreCase))
            throw new RegistryException(415, 415, $"HTTP 415 Unsupported Media Type: {mediaType}");
        try
        {
            return await JsonSerializer.DeserializeAsync(request.Body, type, request.HttpContext.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new RegistryException(400, 400, $"Unrecognized JSON: {e.Message}");
        }
    }

    /// <summary>Registry errors, and anything unexpected, as Confluent error bodies.</summary>
    private static async Task WriteErrors(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (RegistryException e) when (!context.Response.HasStarted)
        {
            await WriteErrorAsync(context.Response, e.Status, e.ErrorCode, e.Message).ConfigureAwait(false);
        }
        catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
        {
            await WriteErrorAsync(context.Response, 500, RegistryErrorCodes.StoreError, $"Internal error: {e.Message}").ConfigureAwait(false);
        }
    }

    /// <summary>Error statuses answered without a body (no such route, method not allowed) get one.</summary>
    private static Task WriteStatusError(StatusCodeContext context)
    {
        var status = context.HttpContext.Response.StatusCode;
        return WriteErrorAsync(context.HttpContext.Response, status, status, $"HTTP {status} {ReasonPhrases.GetReasonPhrase(status)}");
    }

    private static Task WriteErrorAsync(HttpResponse response, int status, int code, string message)
    {
        response.Clear();
        response.StatusCode = status;
        response.ContentType = ContentType;
        return JsonSerializer.SerializeAsync(response.Body, new ErrorBody { ErrorCode = code, Message = message }, RegistryJson.Wire.ErrorBody);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
