using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// The subset of a Confluent Schema Registry client the processor needs. <see cref="SchemaRegistryClient"/>
/// implements it over HTTP; a deployment that can use Confluent's own client can adapt it behind this
/// interface.
/// </summary>
public interface ISchemaRegistryClient
{
    /// <summary>A schema already fetched (the id → schema cache); never blocks.</summary>
    bool TryGetCached(int id, out AvroSchema schema);

    /// <summary>The schema with this id. Throws <see cref="SchemaRegistryException"/> with <c>ErrorCode</c> 40403 when unknown.</summary>
    Task<AvroSchema> GetSchemaAsync(int id, CancellationToken cancellationToken);

    /// <summary>Registers (or finds) <paramref name="schema"/> under <paramref name="subject"/> and returns its id.</summary>
    Task<int> RegisterAsync(string subject, AvroSchema schema, CancellationToken cancellationToken);
}

/// <summary>An error answer from the registry (Confluent error codes: 40401 subject, 40403 schema not found, 42201 invalid, 409 incompatible).</summary>
public sealed class SchemaRegistryException(int httpStatus, int errorCode, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public const int SubjectNotFound = 40401;
    public const int VersionNotFound = 40402;
    public const int SchemaNotFound = 40403;
    public const int InvalidSchema = 42201;
    public const int Incompatible = 409;
    /// <summary>Pseudo error code for "no answer" (connection refused, timeout).</summary>
    public const int Unreachable = -1;

    public int HttpStatus { get; } = httpStatus;
    public int ErrorCode { get; } = errorCode;
}
