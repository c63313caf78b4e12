using System.Reflection;

namespace StreamInference.DevServices.Processes;

/// <summary>How to start the <c>streaminference</c> CLI: its apphost, or <c>dotnet streaminference.dll</c>.</summary>
/// <param name="Program">The executable.</param>
/// <param name="Prefix">Arguments before the command's own (the assembly, for <c>dotnet</c>).</param>
public sealed record CliCommand(string Program, IReadOnlyList<string> Prefix)
{
    /// <summary>The program this process runs, for a CLI that starts children of itself (<c>bench</c>).</summary>
    public static CliCommand CurrentProcess()
    {
        var host = Environment.ProcessPath ?? throw new InvalidOperationException("cannot locate this program to start a child process");
        return Path.GetFileNameWithoutExtension(host) == "dotnet"
            ? new CliCommand(host, [Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("no entry assembly to run")])
            : new CliCommand(host, []);
    }

    /// <summary>A built CLI: an apphost, or a <c>.dll</c> that <c>dotnet</c> runs.</summary>
    public static CliCommand At(string path) =>
        path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? new CliCommand("dotnet", [path]) : new CliCommand(path, []);
}
