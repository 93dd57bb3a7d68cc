using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace SpecVm.Tests.Packaging;

/// <summary>Packs the library, builds the sample consumer against the packed package by version, and runs it.</summary>
public class PackageConsumerTests(ITestOutputHelper output)
{
    [Fact]
    public void PackedPackageBuildsAndRunsTheSample()
    {
        string root = RepoPaths.Root;
        string feed = Path.Combine(root, "artifacts", "packages");
        string packages = Path.Combine(Path.GetTempPath(), "specvm-sample-packages-" + Guid.NewGuid().ToString("N"));
        try
        {
            Run(root, "dotnet", $"pack src/SpecVm -c Release -o \"{feed}\"");
            string nupkg = Path.Combine(feed, "SpecVm.0.1.0.nupkg");
            Assert.True(File.Exists(nupkg), $"expected {nupkg}");
            Assert.True(File.Exists(Path.Combine(feed, "SpecVm.0.1.0.snupkg")), "expected a symbols package");

            string sample = Path.Combine(root, "samples", "SpecVm.Sample");

            // A fresh package folder each time, so a stale extracted copy of the same version can never hide a broken pack.
            Run(sample, "dotnet", $"restore --packages \"{packages}\"");
            string stdout = Run(sample, "dotnet", "run --no-restore -c Release");
            Assert.Contains("sample OK", stdout);
        }
        finally
        {
            try
            {
                Directory.Delete(packages, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private string Run(string workingDirectory, string file, string args)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using Process p = Process.Start(psi)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data != null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(4)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {args} did not finish in 4 minutes");
        }

        p.WaitForExit();
        output.WriteLine($"$ {file} {args}  (exit {p.ExitCode})");
        output.WriteLine(stdout.ToString());
        Assert.True(p.ExitCode == 0, $"{file} {args} exited {p.ExitCode}:\n{stdout}\n{stderr}");
        return stdout.ToString();
    }
}
