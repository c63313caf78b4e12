using System.Text.Json;
using Avro;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using StreamInference.Infrastructure.Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.DevServices.SchemaRegistry;

/// <summary>
/// An in-memory schema registry speaking the subset of Confluent's REST API that serializers use:
/// register, get by id, versions and latest by subject, lookup, compatibility (BACKWARD). Same JSON
/// shapes and error codes. For development and tests; production points SchemaRegistry:Url at a real
/// registry.
/// </summary>
public sealed class DevSchemaRegistry : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Lock _gate = new();
    private readonly List<string> _schemasById = [""]; // index = id; ids start at 1
    private readonly Dictionary<string, int> _idBySchema = [];
    private readonly Dictionary<string, List<int>> _subjects = [];

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
        foreach (var (subject, schema) in preload ?? []) registry.Add(subject, schema.ToString());
        registry.Map(app);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        registry.Url = app.Urls.First();
        return registry;
    }

    /// <summary>A new version of <paramref name="subject"/>; the schema keeps its id if another subject has it. Call under the gate.</summary>
    private int Add(string subject, string canonical)
    {
        if (!_idBySchema.TryGetValue(canonical, out var id))
        {
            id = _schemasById.Count;
            _schemasById.Add(canonical);
            _idBySchema[canonical] = id;
        }
        if (!_subjects.TryGetValue(subject, out var ids)) _subjects[subject] = ids = [];
        ids.Add(id);
        return id;
    }

    private void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/", () => Results.Json(new Dictionary<string, string>()));
        app.MapGet("/config", () => Results.Json(new Dictionary<string, string> { ["compatibilityLevel"] = "BACKWARD" }));
        app.MapGet("/subjects", () =>
        {
            lock (_gate) return Results.Json(_subjects.Keys.Order(StringComparer.Ordinal).ToArray(), RegistryJson.Default.StringArray);
        });
        app.MapGet("/schemas/ids/{id:int}", (int id) =>
        {
            lock (_gate)
            {
                if (id <= 0 || id >= _schemasById.Count) return Error(404, SchemaRegistryException.SchemaNotFound, "Schema not found");
                return Results.Json(new SchemaBody { Schema = _schemasById[id] }, RegistryJson.Default.SchemaBody);
            }
        });
        app.MapGet("/subjects/{subject}/versions", (string subject) =>
        {
            lock (_gate)
            {
                if (!_subjects.TryGetValue(subject, out var ids)) return Error(404, SchemaRegistryException.SubjectNotFound, $"Subject '{subject}' not found.");
                return Results.Json(Enumerable.Range(1, ids.Count).ToArray(), RegistryJson.Default.Int32Array);
            }
        });
        app.MapGet("/subjects/{subject}/versions/{version}", (string subject, string version) =>
        {
            lock (_gate)
            {
                if (!_subjects.TryGetValue(subject, out var ids)) return Error(404, SchemaRegistryException.SubjectNotFound, $"Subject '{subject}' not found.");
                var v = ParseVersion(version, ids.Count);
                if (v is null) return Error(404, SchemaRegistryException.VersionNotFound, $"Version {version} not found.");
                var id = ids[v.Value - 1];
                return Results.Json(new SubjectVersionBody { Subject = subject, Version = v.Value, Id = id, Schema = _schemasById[id] }, RegistryJson.Default.SubjectVersionBody);
            }
        });
        app.MapPost("/subjects/{subject}/versions", async (string subject, HttpRequest request) =>
        {
            var (schema, error) = await ReadSchemaAsync(request).ConfigureAwait(false);
            if (error is not null) return error;
            var canonical = schema!.ToString();
            lock (_gate)
            {
                _subjects.TryGetValue(subject, out var ids);
                if (ids is not null)
                {
                    foreach (var existing in ids)
                        if (_schemasById[existing] == canonical) return Results.Json(new IdBody { Id = existing }, RegistryJson.Default.IdBody);
                    var latest = AvroSchema.Parse(_schemasById[ids[^1]]);
                    if (!schema.CanRead(latest))
                        return Error(409, SchemaRegistryException.Incompatible,
                            $"Schema being registered is incompatible with the latest version of '{subject}' (BACKWARD: the new schema cannot read data written with the latest).");
                }
                return Results.Json(new IdBody { Id = Add(subject, canonical) }, RegistryJson.Default.IdBody);
            }
        });
        app.MapPost("/subjects/{subject}", async (string subject, HttpRequest request) =>
        {
            var (schema, error) = await ReadSchemaAsync(request).ConfigureAwait(false);
            if (error is not null) return error;
            var canonical = schema!.ToString();
            lock (_gate)
            {
                if (!_subjects.TryGetValue(subject, out var ids)) return Error(404, SchemaRegistryException.SubjectNotFound, $"Subject '{subject}' not found.");
                for (var i = 0; i < ids.Count; i++)
                    if (_schemasById[ids[i]] == canonical)
                        return Results.Json(new SubjectVersionBody { Subject = subject, Version = i + 1, Id = ids[i], Schema = canonical }, RegistryJson.Default.SubjectVersionBody);
                return Error(404, SchemaRegistryException.SchemaNotFound, "Schema not found");
            }
        });
        app.MapPost("/compatibility/subjects/{subject}/versions/{version}", async (string subject, string version, HttpRequest request) =>
        {
            var (schema, error) = await ReadSchemaAsync(request).ConfigureAwait(false);
            if (error is not null) return error;
            lock (_gate)
            {
                if (!_subjects.TryGetValue(subject, out var ids)) return Error(404, SchemaRegistryException.SubjectNotFound, $"Subject '{subject}' not found.");
                var v = ParseVersion(version, ids.Count);
                if (v is null) return Error(404, SchemaRegistryException.VersionNotFound, $"Version {version} not found.");
                var existing = AvroSchema.Parse(_schemasById[ids[v.Value - 1]]);
                return Results.Json(new CompatibilityBody { IsCompatible = schema!.CanRead(existing) }, RegistryJson.Default.CompatibilityBody);
            }
        });
    }

    private static int? ParseVersion(string version, int count)
    {
        if (version == "latest" || version == "-1") return count > 0 ? count : null;
        return int.TryParse(version, out var v) && v >= 1 && v <= count ? v : null;
    }

    private static async Task<(AvroSchema? Schema, IResult? Error)> ReadSchemaAsync(HttpRequest request)
    {
        SchemaBody? body;
        try
        {
            body = await JsonSerializer.DeserializeAsync(request.Body, RegistryJson.Default.SchemaBody).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            return (null, Error(422, 42203, $"Invalid JSON: {e.Message}"));
        }
        if (body is null || string.IsNullOrWhiteSpace(body.Schema)) return (null, Error(422, SchemaRegistryException.InvalidSchema, "Missing 'schema'."));
        if (body.SchemaType is not null && body.SchemaType != "AVRO") return (null, Error(422, SchemaRegistryException.InvalidSchema, $"Only AVRO schemas are supported, not {body.SchemaType}."));
        try
        {
            return (AvroSchema.Parse(body.Schema), null);
        }
        catch (SchemaParseException e)
        {
            return (null, Error(422, SchemaRegistryException.InvalidSchema, $"Invalid schema: {e.Message}"));
        }
    }

    private static IResult Error(int status, int code, string message) =>
        Results.Json(new ErrorBody { ErrorCode = code, Message = message }, RegistryJson.Default.ErrorBody, statusCode: status);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
