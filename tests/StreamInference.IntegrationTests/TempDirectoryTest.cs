namespace StreamInference.IntegrationTests;

/// <summary>A test class with a temporary directory of its own, deleted after each test (xUnit makes an instance per test).</summary>
public abstract class TempDirectoryTest(string prefix) : IDisposable
{
    protected string TempDir { get; } = Directory.CreateTempSubdirectory(prefix).FullName;

    public void Dispose()
    {
        if (Directory.Exists(TempDir)) Directory.Delete(TempDir, recursive: true);
        GC.SuppressFinalize(this);
    }
}
