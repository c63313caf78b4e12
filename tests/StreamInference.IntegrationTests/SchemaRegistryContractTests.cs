using System.Net;
using System.Text;
using System.Text.Json;
using Avro.Generic;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using StreamInference.DevServices.SchemaRegistry;
using RegistrySchema = Confluent.SchemaRegistry.Schema;
using SchemaRegistryException = Confluent.SchemaRegistry.SchemaRegistryException;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Confluent's own .NET client (CachedSchemaRegistryClient) and Avro serdes against the dev registry over real
/// HTTP, plus raw requests where the wire itself (headers, bodies, error shapes) is the contract.
/// </summary>
public sealed class SchemaRegistryContractTests : IAsyncLifetime
{
    private const string V1 = """{"type":"record","name":"R","namespace":"contract","fields":[{"name":"a","type":"int"}]}""";
    // V1 plus a defaulted field: backward and forward compatible with V1.
    private const string V2 = """{"type":"record","name":"R","namespace":"contract","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":""}]}""";
    // A new field without default: the new schema cannot read V1 data (not backward); V1 reads it (forward).
    private const string NotBackward = """{"type":"record","name":"R","namespace":"contract","fields":[{"name":"a","type":"int"},{"name":"c","type":"string"}]}""";
    // V1's field dropped for a defaulted one: reads V1 data (backward); V1 cannot read it (not forward).
    private const string NotForward = """{"type":"record","name":"R","namespace":"contract","fields":[{"name":"b","type":"string","default":""}]}""";
    // V2 with b's default removed: reads V2 data, not V1 data.
    private const string V3NoDefault = """{"type":"record","name":"R","namespace":"contract","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}""";

    private DevSchemaRegistry _registry = null!;
    private CachedSchemaRegistryClient _client = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _registry = await DevSchemaRegistry.StartAsync();
        _client = NewClient();
        _http = new HttpClient { BaseAddress = new Uri(_registry.Url) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        _client.Dispose();
        await _registry.DisposeAsync();
    }

    /// <summary>A client with empty caches, so that every call reaches the registry.</summary>
    private CachedSchemaRegistryClient NewClient() => new(new SchemaRegistryConfig { Url = _registry.Url, MaxRetries = 1 });

    private static RegistrySchema Avro(string text) => new(text, SchemaType.Avro);

    private static async Task<SchemaRegistryException> Refused(Func<Task> call, int errorCode)
    {
        var e = await Assert.ThrowsAsync<SchemaRegistryException>(call);
        Assert.Equal(errorCode, e.ErrorCode);
        return e;
    }

    [Fact]
    public async Task Register_IsIdempotent_AndTheSameSchemaKeepsItsIdAcrossSubjects()
    {
        var id = await _client.RegisterSchemaAsync("a-value", Avro(V1));
        using var other = NewClient();
        Assert.Equal(id, await other.RegisterSchemaAsync("a-value", Avro(V1)));
        // Whitespace and attribute order do not make another schema.
        Assert.Equal(id, await other.RegisterSchemaAsync("a-value", Avro("""{ "name": "R", "type": "record", "namespace": "contract", "fields": [ {"type": "int", "name": "a"} ] }""")));
        Assert.Equal(id, await other.RegisterSchemaAsync("b-value", Avro(V1)));
        Assert.Equal([1], await other.GetSubjectVersionsAsync("a-value"));
        Assert.Equal([1], await other.GetSubjectVersionsAsync("b-value"));
        Assert.NotEqual(id, await other.RegisterSchemaAsync("a-value", Avro(V2)));
        Assert.Equal(["a-value", "b-value"], await other.GetAllSubjectsAsync());
    }

    [Fact]
    public async Task SchemasAreFetchedById_AndByVersion()
    {
        var id1 = await _client.RegisterSchemaAsync("s-value", Avro(V1));
        var id2 = await _client.RegisterSchemaAsync("s-value", Avro(V2));
        using var reader = NewClient();

        var byId = await reader.GetSchemaAsync(id2);
        Assert.Equal(AvroSchema.Parse(V2).ToString(), byId.SchemaString);
        Assert.Equal(SchemaType.Avro, byId.SchemaType);
        Assert.Empty(byId.References);
        Assert.Equal(AvroSchema.Parse(V1).ToString(), (await reader.GetSchemaBySubjectAndIdAsync("s-value", id1)).SchemaString);

        var latest = await reader.GetLatestSchemaAsync("s-value");
        Assert.Equal(("s-value", 2, id2), (latest.Subject, latest.Version, latest.Id));
        Assert.Equal(AvroSchema.Parse(V2).ToString(), latest.SchemaString);

        var first = await reader.GetRegisteredSchemaAsync("s-value", 1);
        Assert.Equal(("s-value", 1, id1), (first.Subject, first.Version, first.Id));
        Assert.Equal([1, 2], await reader.GetSubjectVersionsAsync("s-value"));
    }

    [Fact]
    public async Task Lookup_FindsTheVersion_OrAnswers40403And40401()
    {
        await _client.RegisterSchemaAsync("s-value", Avro(V1));
        var id2 = await _client.RegisterSchemaAsync("s-value", Avro(V2));
        using var reader = NewClient();

        var found = await reader.LookupSchemaAsync("s-value", Avro(V2), ignoreDeletedSchemas: true);
        Assert.Equal(("s-value", 2, id2), (found.Subject, found.Version, found.Id));
        Assert.Equal(id2, await reader.GetSchemaIdAsync("s-value", V2));
        await Refused(() => reader.LookupSchemaAsync("s-value", Avro(NotForward), ignoreDeletedSchemas: true), RegistryErrorCodes.SchemaNotFound);
        await Refused(() => reader.LookupSchemaAsync("nobody-value", Avro(V1), ignoreDeletedSchemas: true), RegistryErrorCodes.SubjectNotFound);
    }

    [Fact]
    public async Task UnknownIdsSubjectsAndVersions_AnswerConfluentCodes()
    {
        await _client.RegisterSchemaAsync("s-value", Avro(V1));
        var e = await Refused(() => _client.GetSchemaAsync(4242), RegistryErrorCodes.SchemaNotFound);
        Assert.Equal(HttpStatusCode.NotFound, e.Status);
        await Refused(() => _client.GetLatestSchemaAsync("nobody-value"), RegistryErrorCodes.SubjectNotFound);
        await Refused(() => _client.GetSubjectVersionsAsync("nobody-value"), RegistryErrorCodes.SubjectNotFound);
        await Refused(() => _client.GetRegisteredSchemaAsync("s-value", 7), RegistryErrorCodes.VersionNotFound);
        await Refused(() => _client.RegisterSchemaAsync("s-value", Avro("""{"type":"record","name":"R"}""")), RegistryErrorCodes.InvalidSchema);
        await Refused(() => _client.RegisterSchemaAsync("p-value", new RegistrySchema("""syntax = "proto3";""", SchemaType.Protobuf)), RegistryErrorCodes.InvalidSchema);
    }

    [Fact]
    public async Task Compatibility_IsGlobalByDefault_AndSetPerSubject()
    {
        Assert.Equal(Compatibility.Backward, await _client.GetCompatibilityAsync());
        // A subject without its own level: Confluent answers 40408 unless asked to fall back to the global level.
        await _client.RegisterSchemaAsync("s-value", Avro(V1));
        await Refused(() => _client.GetCompatibilityAsync("s-value"), RegistryErrorCodes.SubjectCompatibilityNotConfigured);
        Assert.Equal("""{"compatibilityLevel":"BACKWARD"}""", await _http.GetStringAsync("/config/s-value?defaultToGlobal=true"));

        await _client.UpdateCompatibilityAsync(Compatibility.Full, "s-value");
        Assert.Equal(Compatibility.Full, await _client.GetCompatibilityAsync("s-value"));
        await _client.UpdateCompatibilityAsync(Compatibility.ForwardTransitive);
        Assert.Equal(Compatibility.ForwardTransitive, await _client.GetCompatibilityAsync());
        Assert.Equal(Compatibility.Full, await _client.GetCompatibilityAsync("s-value"));

        using var reset = await _http.DeleteAsync("/config/s-value");
        Assert.Equal("""{"compatibilityLevel":"FULL"}""", await reset.Content.ReadAsStringAsync());
        await Refused(() => _client.GetCompatibilityAsync("s-value"), RegistryErrorCodes.SubjectCompatibilityNotConfigured);

        using var invalid = await _http.PutAsync("/config", Json("""{"compatibility":"SIDEWAYS"}"""));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, invalid.StatusCode);
        Assert.Equal(RegistryErrorCodes.InvalidCompatibilityLevel, await ErrorCodeAsync(invalid));
    }

    [Fact]
    public async Task UpdateCompatibility_AnswersWithTheLevelSet()
    {
        using var answer = await _http.PutAsync("/config", Json("""{"compatibility":"full"}"""));
        Assert.Equal("""{"compatibility":"FULL"}""", await answer.Content.ReadAsStringAsync());
        Assert.Equal(Compatibility.BackwardTransitive, await _client.UpdateCompatibilityAsync(Compatibility.BackwardTransitive, "s-value"));
        Assert.Equal(Compatibility.BackwardTransitive, await _client.GetCompatibilityAsync("s-value"));
        Assert.Equal(Compatibility.Full, await _client.UpdateCompatibilityAsync(Compatibility.Full));
    }

    [Fact]
    public async Task IsCompatible_ChecksAgainstTheLatestVersion()
    {
        await _client.RegisterSchemaAsync("s-value", Avro(V1));
        Assert.True(await _client.IsCompatibleAsync("s-value", Avro(V2)));
        Assert.False(await _client.IsCompatibleAsync("s-value", Avro(NotBackward)));

        using var verbose = await _http.PostAsync("/compatibility/subjects/s-value/versions/latest?verbose=true", Json(SchemaBody(NotBackward)));
        using var body = JsonDocument.Parse(await verbose.Content.ReadAsStringAsync());
        Assert.False(body.RootElement.GetProperty("is_compatible").GetBoolean());
        Assert.Contains("BACKWARD", body.RootElement.GetProperty("messages")[0].GetString());
    }

    [Theory]
    [InlineData(Compatibility.Backward, NotBackward, NotForward)]
    [InlineData(Compatibility.Forward, NotForward, NotBackward)]
    [InlineData(Compatibility.Full, NotBackward, V2)]
    [InlineData(Compatibility.Full, NotForward, V2)]
    public async Task IncompatibleRegistration_IsRefusedWith409(Compatibility level, string refused, string accepted)
    {
        await _client.UpdateCompatibilityAsync(level, "s-value");
        var id1 = await _client.RegisterSchemaAsync("s-value", Avro(V1));
        var e = await Refused(() => _client.RegisterSchemaAsync("s-value", Avro(refused)), RegistryErrorCodes.IncompatibleSchema);
        Assert.Equal(HttpStatusCode.Conflict, e.Status);
        Assert.Contains(level.ToString().ToUpperInvariant(), e.Message);
        Assert.Equal([1], await _client.GetSubjectVersionsAsync("s-value"));
        Assert.NotEqual(id1, await _client.RegisterSchemaAsync("s-value", Avro(accepted)));
        Assert.Equal([1, 2], await _client.GetSubjectVersionsAsync("s-value"));
    }

    [Theory]
    // A nullable field made non-nullable: the new reader cannot read the old nulls.
    [InlineData("""{"type":"record","name":"N","fields":[{"name":"x","type":["null","int"],"default":null}]}""",
                """{"type":"record","name":"N","fields":[{"name":"x","type":"int","default":0}]}""")]
    // An enum symbol dropped without an enum default.
    [InlineData("""{"type":"record","name":"N","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}]}""",
                """{"type":"record","name":"N","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}""")]
    public async Task Backward_RefusesWhatConfluentRefuses_WhereApacheAvroCanReadIsLooser(string old, string narrowed)
    {
        Assert.True(AvroSchema.Parse(narrowed).CanRead(AvroSchema.Parse(old)));
        await _client.RegisterSchemaAsync("n-value", Avro(old));
        await Refused(() => _client.RegisterSchemaAsync("n-value", Avro(narrowed)), RegistryErrorCodes.IncompatibleSchema);
    }

    [Fact]
    public async Task RecursiveSchemas_Evolve()
    {
        const string list = """{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}""";
        const string withLabel = """{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null},{"name":"label","type":"string","default":""}]}""";
        const string withoutDefault = """{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null},{"name":"label","type":"string"}]}""";
        await _client.UpdateCompatibilityAsync(Compatibility.FullTransitive, "list-value");
        await _client.RegisterSchemaAsync("list-value", Avro(list));
        await _client.RegisterSchemaAsync("list-value", Avro(withLabel));
        await Refused(() => _client.RegisterSchemaAsync("list-value", Avro(withoutDefault)), RegistryErrorCodes.IncompatibleSchema);
        Assert.Equal([1, 2], await _client.GetSubjectVersionsAsync("list-value"));
    }

    [Fact]
    public async Task LevelNone_AcceptsAnything()
    {
        await _client.UpdateCompatibilityAsync(Compatibility.None, "s-value");
        await _client.RegisterSchemaAsync("s-value", Avro(V1));
        await _client.RegisterSchemaAsync("s-value", Avro(NotBackward));
        await _client.RegisterSchemaAsync("s-value", Avro(NotForward));
        await _client.RegisterSchemaAsync("s-value", Avro("\"string\""));
        Assert.Equal([1, 2, 3, 4], await _client.GetSubjectVersionsAsync("s-value"));
    }

    [Fact]
    public async Task TransitiveLevels_CheckEveryEarlierVersion()
    {
        // V1 → V2 → V3NoDefault: each step is backward compatible, but V3NoDefault cannot read V1 data.
        await _client.UpdateCompatibilityAsync(Compatibility.BackwardTransitive, "t-value");
        await _client.RegisterSchemaAsync("t-value", Avro(V1));
        await _client.RegisterSchemaAsync("t-value", Avro(V2));
        var e = await Refused(() => _client.RegisterSchemaAsync("t-value", Avro(V3NoDefault)), RegistryErrorCodes.IncompatibleSchema);
        Assert.Contains("BACKWARD_TRANSITIVE", e.Message);
        Assert.Contains("version 1", e.Message);
        Assert.DoesNotContain("version 2", e.Message);

        await _client.RegisterSchemaAsync("b-value", Avro(V1));
        await _client.RegisterSchemaAsync("b-value", Avro(V2));
        await _client.RegisterSchemaAsync("b-value", Avro(V3NoDefault));
        Assert.Equal([1, 2, 3], await _client.GetSubjectVersionsAsync("b-value"));

        // Checking against "all versions" follows the level: the latest for BACKWARD, every one for BACKWARD_TRANSITIVE.
        using (var latestOnly = await _http.PostAsync("/compatibility/subjects/b-value/versions", Json(SchemaBody(V3NoDefault))))
            Assert.Equal("""{"is_compatible":true}""", await latestOnly.Content.ReadAsStringAsync());
        await _client.UpdateCompatibilityAsync(Compatibility.BackwardTransitive, "b-value");
        using var all = await _http.PostAsync("/compatibility/subjects/b-value/versions?verbose=true", Json(SchemaBody(V3NoDefault)));
        Assert.Equal("""{"is_compatible":false,"messages":["BACKWARD_TRANSITIVE: the new schema cannot read data written with version 1"]}""",
            await all.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task DeleteSubject_SoftThenPermanent_AndReRegisterAfterSoftDelete()
    {
        var id1 = await _client.RegisterSchemaAsync("d-value", Avro(V1));
        var id2 = await _client.RegisterSchemaAsync("d-value", Avro(V2));

        using (var premature = await _http.DeleteAsync("/subjects/d-value?permanent=true"))
            Assert.Equal(RegistryErrorCodes.SubjectNotSoftDeleted, await ErrorCodeAsync(premature));
        using (var soft = await _http.DeleteAsync("/subjects/d-value"))
            Assert.Equal("[1,2]", await soft.Content.ReadAsStringAsync());
        using (var again = await _http.DeleteAsync("/subjects/d-value"))
            Assert.Equal(RegistryErrorCodes.SubjectSoftDeleted, await ErrorCodeAsync(again));

        using var reader = NewClient();
        Assert.DoesNotContain("d-value", await reader.GetAllSubjectsAsync());
        Assert.Equal("""["d-value"]""", await _http.GetStringAsync("/subjects?deleted=true"));
        Assert.Equal("[1,2]", await _http.GetStringAsync("/subjects/d-value/versions?deleted=true"));
        await Refused(() => reader.GetLatestSchemaAsync("d-value"), RegistryErrorCodes.SubjectNotFound);
        // Soft-deleted schemas still decode: the id keeps answering.
        Assert.Equal(AvroSchema.Parse(V1).ToString(), (await reader.GetSchemaAsync(id1)).SchemaString);

        // Registering again after a soft delete: a new version, the same id.
        Assert.Equal(id1, await reader.RegisterSchemaAsync("d-value", Avro(V1)));
        Assert.Equal([3], await reader.GetSubjectVersionsAsync("d-value"));

        using (var version = await _http.DeleteAsync("/subjects/d-value/versions/3"))
            Assert.Equal("3", await version.Content.ReadAsStringAsync());
        using (var permanent = await _http.DeleteAsync("/subjects/d-value?permanent=true"))
            Assert.Equal("[1,2,3]", await permanent.Content.ReadAsStringAsync());
        using var afterHardDelete = NewClient();
        Assert.DoesNotContain("d-value", await _http.GetStringAsync("/subjects?deleted=true"));
        await Refused(() => afterHardDelete.GetSchemaAsync(id2), RegistryErrorCodes.SchemaNotFound);

        // Ids are never handed to another schema.
        var next = await afterHardDelete.RegisterSchemaAsync("e-value", Avro(NotForward));
        Assert.True(next > id2);
    }

    [Fact]
    public async Task DeleteVersion_SoftThenPermanent()
    {
        await _client.RegisterSchemaAsync("v-value", Avro(V1));
        await _client.RegisterSchemaAsync("v-value", Avro(V2));
        using (var premature = await _http.DeleteAsync("/subjects/v-value/versions/2?permanent=true"))
            Assert.Equal(RegistryErrorCodes.SchemaVersionNotSoftDeleted, await ErrorCodeAsync(premature));
        using (var soft = await _http.DeleteAsync("/subjects/v-value/versions/latest"))
            Assert.Equal("2", await soft.Content.ReadAsStringAsync());
        using (var again = await _http.DeleteAsync("/subjects/v-value/versions/2"))
            Assert.Equal(RegistryErrorCodes.SchemaVersionSoftDeleted, await ErrorCodeAsync(again));
        using var reader = NewClient();
        Assert.Equal(1, (await reader.GetLatestSchemaAsync("v-value")).Version);
        await Refused(() => reader.GetRegisteredSchemaAsync("v-value", 2), RegistryErrorCodes.VersionNotFound);
        Assert.Contains("\"version\":2", await _http.GetStringAsync("/subjects/v-value/versions/2?deleted=true"));
        using (var permanent = await _http.DeleteAsync("/subjects/v-value/versions/2?permanent=true"))
            Assert.Equal("2", await permanent.Content.ReadAsStringAsync());
        Assert.Equal("[1]", await _http.GetStringAsync("/subjects/v-value/versions?deleted=true"));
        using var invalid = await _http.GetAsync("/subjects/v-value/versions/zero");
        Assert.Equal(RegistryErrorCodes.InvalidVersion, await ErrorCodeAsync(invalid));
    }

    [Fact]
    public async Task ReadOnlyMode_RefusesRegistration()
    {
        Assert.Equal("""{"mode":"READWRITE"}""", await _http.GetStringAsync("/mode"));
        await _client.RegisterSchemaAsync("m-value", Avro(V1));
        using (var set = await _http.PutAsync("/mode/m-value", Json("""{"mode":"READONLY"}""")))
            Assert.Equal("""{"mode":"READONLY"}""", await set.Content.ReadAsStringAsync());
        var e = await Refused(() => _client.RegisterSchemaAsync("m-value", Avro(V2)), RegistryErrorCodes.OperationNotPermitted);
        Assert.Contains("read-only", e.Message);
        Assert.True(await _client.RegisterSchemaAsync("other-value", Avro(V2)) > 0);
        using (var reset = await _http.DeleteAsync("/mode/m-value"))
            Assert.Equal(HttpStatusCode.OK, reset.StatusCode);
        Assert.True(await _client.RegisterSchemaAsync("m-value", Avro(V2)) > 0);
    }

    [Fact]
    public async Task References_AreStoredReturnedAndResolved()
    {
        const string address = """{"type":"record","name":"Address","namespace":"contract","fields":[{"name":"city","type":"string"}]}""";
        const string person = """{"type":"record","name":"Person","namespace":"contract","fields":[{"name":"home","type":"contract.Address"}]}""";
        await _client.RegisterSchemaAsync("address", Avro(address));
        var references = new List<SchemaReference> { new("contract.Address", "address", 1) };
        var id = await _client.RegisterSchemaAsync("person-value", new RegistrySchema(person, references, SchemaType.Avro));

        using var reader = NewClient();
        var fetched = await reader.GetSchemaAsync(id);
        var reference = Assert.Single(fetched.References);
        Assert.Equal(("contract.Address", "address", 1), (reference.Name, reference.Subject, reference.Version));
        Assert.Equal(person, fetched.SchemaString);
        Assert.Single((await reader.GetLatestSchemaAsync("person-value")).References);
        Assert.Equal($"[{id}]", await _http.GetStringAsync("/subjects/address/versions/1/referencedby"));

        using (var referenced = await _http.DeleteAsync("/subjects/address"))
            Assert.Equal(RegistryErrorCodes.ReferenceExists, await ErrorCodeAsync(referenced));
        await Refused(() => reader.RegisterSchemaAsync("orphan-value", Avro(person)), RegistryErrorCodes.InvalidSchema);
        var missing = new List<SchemaReference> { new("contract.Address", "address", 9) };
        await Refused(() => reader.RegisterSchemaAsync("orphan-value", new RegistrySchema(person, missing, SchemaType.Avro)), RegistryErrorCodes.InvalidSchema);
    }

    [Fact]
    public async Task Preload_AssignsIdsInOrder()
    {
        await using var preloaded = await DevSchemaRegistry.StartAsync(0, [("p-value", AvroSchema.Parse(V1)), ("q-value", AvroSchema.Parse(NotForward)), ("p-value", AvroSchema.Parse(V2))]);
        using var client = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = preloaded.Url });
        Assert.Equal(AvroSchema.Parse(V1).ToString(), (await client.GetSchemaAsync(1)).SchemaString);
        Assert.Equal(AvroSchema.Parse(NotForward).ToString(), (await client.GetSchemaAsync(2)).SchemaString);
        var latest = await client.GetLatestSchemaAsync("p-value");
        Assert.Equal((2, 3), (latest.Version, latest.Id));
    }

    [Fact]
    public async Task Wire_ContentTypeAndUnescapedSchemaStrings()
    {
        var id = await _client.RegisterSchemaAsync("w-value", Avro(V1));
        using var ok = await _http.GetAsync($"/schemas/ids/{id}");
        Assert.Equal(DevSchemaRegistry.ContentType, ok.Content.Headers.ContentType?.MediaType);
        var text = await ok.Content.ReadAsStringAsync();
        Assert.Contains("\\\"type\\\":\\\"record\\\"", text);
        Assert.DoesNotContain("\\u0022", text);
        Assert.DoesNotContain("schemaType", text);
        Assert.DoesNotContain("references", text);

        using var raw = await _http.GetAsync($"/schemas/ids/{id}/schema");
        Assert.Equal(DevSchemaRegistry.ContentType, raw.Content.Headers.ContentType?.MediaType);
        Assert.Equal(AvroSchema.Parse(V1).ToString(), await raw.Content.ReadAsStringAsync());

        Assert.Equal("""["AVRO"]""", await _http.GetStringAsync("/schemas/types"));
        Assert.Equal($$"""[{"subject":"w-value","version":1}]""", await _http.GetStringAsync($"/schemas/ids/{id}/versions"));
        Assert.Equal("""["w-value"]""", await _http.GetStringAsync($"/schemas/ids/{id}/subjects"));

        using var missing = await _http.GetAsync("/schemas/ids/999");
        Assert.Equal(DevSchemaRegistry.ContentType, missing.Content.Headers.ContentType?.MediaType);
        Assert.Equal("""{"error_code":40403,"message":"Schema 999 not found"}""", await missing.Content.ReadAsStringAsync());

        using var noRoute = await _http.GetAsync("/no/such/route");
        Assert.Equal(HttpStatusCode.NotFound, noRoute.StatusCode);
        Assert.Equal(DevSchemaRegistry.ContentType, noRoute.Content.Headers.ContentType?.MediaType);
        Assert.Equal(404, await ErrorCodeAsync(noRoute));

        using var wrongMethod = await _http.PatchAsync("/subjects", Json("{}"));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, wrongMethod.StatusCode);
        Assert.Equal(405, await ErrorCodeAsync(wrongMethod));

        using var malformed = await _http.PostAsync("/subjects/w-value/versions", Json("""{"schema": """));
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.Equal(400, await ErrorCodeAsync(malformed));

        using var plainJson = await _http.PostAsync("/subjects/w-value/versions", new StringContent(SchemaBody(V1), Encoding.UTF8, "application/json"));
        Assert.Equal($$"""{"id":{{id}}}""", await plainJson.Content.ReadAsStringAsync());
        using var xml = await _http.PostAsync("/subjects/w-value/versions", new StringContent("<schema/>", Encoding.UTF8, "application/xml"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, xml.StatusCode);
        Assert.Equal(415, await ErrorCodeAsync(xml));
    }

    [Fact]
    public async Task AvroSerdes_RoundTripWithAutoRegistration()
    {
        var schema = (Avro.RecordSchema)AvroSchema.Parse(V2);
        var record = new GenericRecord(schema);
        record.Add("a", 42);
        record.Add("b", "forty-two");
        var context = new SerializationContext(MessageComponentType.Value, "payments");

        var serializer = new AvroSerializer<GenericRecord>(_client);
        var bytes = await serializer.SerializeAsync(record, context);
        var latest = await _client.GetLatestSchemaAsync("payments-value");
        Assert.Equal(0, bytes[0]);
        Assert.Equal(latest.Id, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(1, 4)));

        using var consumerSide = NewClient();
        var decoded = await new AvroDeserializer<GenericRecord>(consumerSide).DeserializeAsync(bytes, isNull: false, context);
        Assert.Equal(42, decoded["a"]);
        Assert.Equal("forty-two", decoded["b"]);
    }

    [Fact]
    public async Task AvroSerdes_UseLatestVersion_WithoutAutoRegistration()
    {
        var context = new SerializationContext(MessageComponentType.Value, "orders");
        var id1 = await _client.RegisterSchemaAsync("orders-value", Avro(V1));
        var old = new GenericRecord((Avro.RecordSchema)AvroSchema.Parse(V1));
        old.Add("a", 7);
        var oldBytes = await new AvroSerializer<GenericRecord>(_client, new AvroSerializerConfig { AutoRegisterSchemas = false }).SerializeAsync(old, context);
        var id2 = await _client.RegisterSchemaAsync("orders-value", Avro(V2));

        using var producerSide = NewClient();
        var current = new GenericRecord((Avro.RecordSchema)AvroSchema.Parse(V2));
        current.Add("a", 8);
        current.Add("b", "new");
        var serializer = new AvroSerializer<GenericRecord>(producerSide, new AvroSerializerConfig { AutoRegisterSchemas = false, UseLatestVersion = true });
        var bytes = await serializer.SerializeAsync(current, context);
        Assert.Equal(id2, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(1, 4)));
        Assert.Equal(id1, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(oldBytes.AsSpan(1, 4)));

        // Reading with the latest version: V1 data resolves to V2 (b takes its default).
        using var consumerSide = NewClient();
        var deserializer = new AvroDeserializer<GenericRecord>(consumerSide, new AvroDeserializerConfig { UseLatestVersion = true });
        var upgraded = await deserializer.DeserializeAsync(oldBytes, isNull: false, context);
        Assert.Equal("contract.R", upgraded.Schema.Fullname);
        Assert.Equal(7, upgraded["a"]);
        Assert.Equal("", upgraded["b"]);
        var same = await deserializer.DeserializeAsync(bytes, isNull: false, context);
        Assert.Equal((8, "new"), ((int)same["a"], (string)same["b"]));

        // Without registration a schema the subject does not have is refused.
        var unknown = new GenericRecord((Avro.RecordSchema)AvroSchema.Parse(NotForward));
        unknown.Add("b", "x");
        var lookupOnly = new AvroSerializer<GenericRecord>(NewClient(), new AvroSerializerConfig { AutoRegisterSchemas = false });
        await Refused(() => lookupOnly.SerializeAsync(unknown, context), RegistryErrorCodes.SchemaNotFound);
    }

    private static string SchemaBody(string schema) => JsonSerializer.Serialize(new Dictionary<string, string> { ["schema"] = schema });

    private static StringContent Json(string body) => new(body, Encoding.UTF8, DevSchemaRegistry.ContentType);

    private static async Task<int> ErrorCodeAsync(HttpResponseMessage response)
    {
        Assert.Equal(DevSchemaRegistry.ContentType, response.Content.Headers.ContentType?.MediaType);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.True(body.RootElement.TryGetProperty("message", out _));
        return body.RootElement.GetProperty("error_code").GetInt32();
    }
}
