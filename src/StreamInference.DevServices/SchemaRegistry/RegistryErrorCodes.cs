namespace StreamInference.DevServices.SchemaRegistry;

/// <summary>Confluent Schema Registry error codes (the <c>error_code</c> of an error body) and their HTTP statuses.</summary>
public static class RegistryErrorCodes
{
    public const int SubjectNotFound = 40401;
    public const int VersionNotFound = 40402;
    public const int SchemaNotFound = 40403;
    public const int SubjectSoftDeleted = 40404;
    public const int SubjectNotSoftDeleted = 40405;
    public const int SchemaVersionSoftDeleted = 40406;
    public const int SchemaVersionNotSoftDeleted = 40407;
    public const int SubjectCompatibilityNotConfigured = 40408;
    public const int SubjectModeNotConfigured = 40409;
    /// <summary>Incompatible schema: HTTP 409 with error_code 409, as Confluent Platform 7.x answers (newer servers send 40901).</summary>
    public const int IncompatibleSchema = 409;
    public const int InvalidSchema = 42201;
    public const int InvalidVersion = 42202;
    public const int InvalidCompatibilityLevel = 42203;
    public const int InvalidMode = 42204;
    public const int OperationNotPermitted = 42205;
    public const int ReferenceExists = 42206;
    public const int StoreError = 50001;

    internal static RegistryException SubjectNotFoundError(string subject) => new(404, SubjectNotFound, $"Subject '{subject}' not found.");
    internal static RegistryException VersionNotFoundError(int version) => new(404, VersionNotFound, $"Version {version} not found.");
    internal static RegistryException SchemaNotFoundError() => new(404, SchemaNotFound, "Schema not found");
    internal static RegistryException SchemaNotFoundError(int id) => new(404, SchemaNotFound, $"Schema {id} not found");
    internal static RegistryException SubjectSoftDeletedError(string subject) =>
        new(404, SubjectSoftDeleted, $"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently");
    internal static RegistryException SubjectNotSoftDeletedError(string subject) =>
        new(404, SubjectNotSoftDeleted, $"Subject '{subject}' was not deleted first before being permanently deleted");
    internal static RegistryException VersionSoftDeletedError(string subject, int version) =>
        new(404, SchemaVersionSoftDeleted, $"Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently");
    internal static RegistryException VersionNotSoftDeletedError(string subject, int version) =>
        new(404, SchemaVersionNotSoftDeleted, $"Subject '{subject}' Version {version} was not deleted first before being permanently deleted");
    internal static RegistryException CompatibilityNotConfiguredError(string subject) =>
        new(404, SubjectCompatibilityNotConfigured, $"Subject '{subject}' does not have subject-level compatibility configured");
    internal static RegistryException ModeNotConfiguredError(string subject) =>
        new(404, SubjectModeNotConfigured, $"Subject '{subject}' does not have subject-level mode configured");
    internal static RegistryException InvalidSchemaError(string message) => new(422, InvalidSchema, message);
    internal static RegistryException InvalidVersionError(string version) =>
        new(422, InvalidVersion, $"The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"");
    internal static RegistryException InvalidCompatibilityError() =>
        new(422, InvalidCompatibilityLevel, "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive");
    internal static RegistryException InvalidModeError(string? mode) =>
        new(422, InvalidMode, $"Invalid mode '{mode}'. Valid values are READWRITE, READONLY and READONLY_OVERRIDE (IMPORT is not supported by the dev registry)");
    internal static RegistryException ReadOnlyError(string subject) => new(422, OperationNotPermitted, $"Subject {subject} is in read-only mode");
    internal static RegistryException ReferenceExistsError(string subject, int version) =>
        new(422, ReferenceExists, $"One or more references exist to the schema {{subject={subject},version={version}}}");
}

/// <summary>An error answer: the HTTP status and the Confluent error code and message of the body.</summary>
internal sealed class RegistryException(int status, int errorCode, string message) : Exception(message)
{
    public int Status { get; } = status;
    public int ErrorCode { get; } = errorCode;
}
