using StreamInference.DevServices.SchemaRegistry;

namespace StreamInference.IntegrationTests;

/// <summary>The registry client against the dev registry, over real HTTP.</summary>
public sealed class SchemaRegistryTests : IAsyncLifetime
{
    private DevSchemaRegistry _registry = null!;
    private static readonly AvroSchema V1 = AvroSchema.Parse("""{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}""");
    private static readonly AvroSchema V2 = AvroSchema.Parse("""{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":""}]}""");
    private static readonly AvroSchema Breaking = AvroSchema.Parse("""{"type":"record","name":"R","fields":[{"name":"c","type":"string"}]}""");

    public async Task InitializeAsync() => _registry = await DevSchemaRegistry.StartAsync();
    public async Task DisposeAsync() => await _registry.DisposeAsync();

    [Fact]
    public async Task Register_IsIdempotent_AndSchemasAreFetchedById()
    {
        using var client = new SchemaRegistryClient(new SchemaRegistryOptions { Url = _registry.Url });
        var id1 = await client.RegisterAsync("s-value", V1, CancellationToken.None);
        using var other = new SchemaRegistryClient(new SchemaRegistryOptions { Url = _registry.Url });
        Assert.Equal(id1, await other.RegisterAsync("s-value", V1, CancellationToken.None));
        var id2 = await other.RegisterAsync("s-value", V2, CancellationToken.None);
        Assert.NotEqual(id1, id2);
        var fetched = await other.GetSchemaAsync(id2, CancellationToken.None);
        Assert.Equal(V2.ToString(), fetched.ToString());
        Assert.True(other.TryGetCached(id2, out _));
    }

    [Fact]
    public async Task UnknownId_Answers40403()
    {
        using var client = new SchemaRegistryClient(new SchemaRegistryOptions { Url = _registry.Url });
        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.GetSchemaAsync(4242, CancellationToken.None));
        Assert.Equal(404, e.HttpStatus);
        Assert.Equal(SchemaRegistryException.SchemaNotFound, e.ErrorCode);
    }

    [Fact]
    public async Task IncompatibleSchema_Answers409()
    {
        using var client = new SchemaRegistryClient(new SchemaRegistryOptions { Url = _registry.Url });
        await client.RegisterAsync("t-value", V1, CancellationToken.None);
        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.RegisterAsync("t-value", Breaking, CancellationToken.None));
        Assert.Equal(409, e.HttpStatus);
        Assert.Equal(SchemaRegistryException.Incompatible, e.ErrorCode);
    }

    [Fact]
    public async Task UnreachableRegistry_FailsWithClearError_AfterRetries()
    {
        var port = StreamInference.DevServices.Redis.EmbeddedGarnet.FreePort();
        using var client = new SchemaRegistryClient(new SchemaRegistryOptions { Url = $"http://127.0.0.1:{port}", MaxAttempts = 2 });
        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.GetSchemaAsync(1, CancellationToken.None));
        Assert.Equal(SchemaRegistryException.Unreachable, e.ErrorCode);
        Assert.Contains("did not answer", e.Message);
    }
}
