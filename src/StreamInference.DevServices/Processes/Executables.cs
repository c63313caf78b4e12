namespace StreamInference.DevServices.Processes;

/// <summary>Locates installed tools (redis-server, promtool, kubectl …) for the dev services, the bench and the tests.</summary>
public static class Executables
{
    /// <summary>The executable's full path on PATH, else in /usr/bin, /usr/local/bin or /usr/sbin; null when not found.</summary>
    public static string? Find(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Concat(["/usr/bin", "/usr/local/bin", "/usr/sbin"]))
        {
            if (dir.Length == 0) continue;
            var full = Path.Combine(dir, name);
            if (File.Exists(full)) return full;
        }
        return null;
    }
}
