using System.Diagnostics;
using System.Reflection;
using SpecVm.Tests.Packaging;

namespace SpecVm.Tests.Cli;

/// <summary>What a run of the CLI printed and returned.</summary>
/// <param name="ExitCode">The process exit code.</param>
/// <param name="Stdout">Standard output.</param>
/// <param name="Stderr">Standard error.</param>
internal sealed record CliOutput(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>
/// Runs the real CLI as a child process (<c>dotnet exec</c> of src/SpecVm.Benchmarks' own build output, which the
/// test project's ProjectReference builds in the same configuration), so exit codes, stderr lines and signals are
/// what a user gets.
/// </summary>
internal static class CliProcess
{
    /// <summary>The configuration the tests (and so the app) were built in.</summary>
    public static string Configuration { get; } =
        typeof(CliProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";

    /// <summary>True in a Debug build: the app then refuses to measure without --allow-debug.</summary>
    public static bool IsDebug => Configuration == "Debug";

    /// <summary>The app's entry assembly.</summary>
    public static string AppDll { get; } = Path.Combine(RepoPaths.Root, "src", "SpecVm.Benchmarks", "bin", Configuration, "net10.0", "SpecVm.Benchmarks.dll");

    /// <summary>Starts the app with <paramref name="args"/> in <paramref name="workingDirectory"/>; stdin is empty.</summary>
    public static Process Start(string workingDirectory, params string[] args)
    {
        Assert.True(File.Exists(AppDll), $"the app is not built: {AppDll}");
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(AppDll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        return p;
    }

    /// <summary>Runs the app to completion (killed after <paramref name="timeout"/>, which fails the test).</summary>
    public static CliOutput Run(string workingDirectory, TimeSpan timeout, params string[] args)
    {
        using Process p = Start(workingDirectory, args);
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"spec-vm {string.Join(' ', args)} ran past {timeout.TotalSeconds} s");
        }

        p.WaitForExit();
        return new CliOutput(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs the app with a 60 s bound.</summary>
    public static CliOutput Run(string workingDirectory, params string[] args) => Run(workingDirectory, TimeSpan.FromSeconds(60), args);
}

/// <summary>A fresh temporary directory, deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "specvm-cli-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A child process may still hold a file; the OS cleans the temp folder.
        }
    }
}
