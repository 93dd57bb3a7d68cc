using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using Xunit.Abstractions;

namespace SpecVm.Tests.Packaging;

/// <summary>
/// Packs the library as a publisher would (passing the repository URL), checks what the package holds, builds the
/// sample consumer against the packed package by version, and runs it.
/// </summary>
public class PackageConsumerTests(ITestOutputHelper output)
{
    /// <summary>A URL that cannot be anyone's repository: the test only checks that the one passed is the one packed.</summary>
    private const string TestRepositoryUrl = "https://example.invalid/specvm.git";

    [Fact]
    public void PackedPackageIsValidatedHoldsItsDocumentsAndBuildsAndRunsTheSample()
    {
        string root = RepoPaths.Root;
        string feed = Path.Combine(root, "artifacts", "packages");
        string packages = Path.Combine(Path.GetTempPath(), "specvm-sample-packages-" + Guid.NewGuid().ToString("N"));
        try
        {
            // Package validation is incremental (it skips itself when its stamp is newer than the package): remove the
            // stamp so this pack validates and says so.
            string obj = Path.Combine(root, "src", "SpecVm", "obj");
            foreach (string stamp in Directory.Exists(obj) ? Directory.EnumerateFiles(obj, "Microsoft.NET.ApiCompat.ValidatePackage.semaphore", SearchOption.AllDirectories) : [])
            {
                File.Delete(stamp);
            }

            string packed = Run(root, "dotnet", $"pack src/SpecVm -c Release -v:n -p:RepositoryUrl={TestRepositoryUrl} -o \"{feed}\"");
            Assert.Contains("RunPackageValidation:", packed);
            Assert.Contains("APICompat ran successfully", packed);

            string nupkg = Path.Combine(feed, "SpecVm.0.1.0.nupkg");
            Assert.True(File.Exists(nupkg), $"expected {nupkg}");
            Assert.True(File.Exists(Path.Combine(feed, "SpecVm.0.1.0.snupkg")), "expected a symbols package");
            using (ZipArchive zip = ZipFile.OpenRead(nupkg))
            {
                var entries = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
                foreach (string expected in new[] { "LICENSE", "PACKAGE.md", "lib/net10.0/SpecVm.dll", "lib/net10.0/SpecVm.xml" })
                {
                    Assert.True(entries.Contains(expected), $"the package lacks {expected}; it has {string.Join(", ", entries)}");
                }

                Assert.DoesNotContain("README.md", entries);
                using var nuspecReader = new StreamReader(zip.GetEntry("SpecVm.nuspec")!.Open());
                string nuspec = nuspecReader.ReadToEnd();
                Assert.Contains("<readme>PACKAGE.md</readme>", nuspec);
                Assert.Contains("<license type=\"expression\">MIT</license>", nuspec);
                Assert.Contains($"url=\"{TestRepositoryUrl}\"", nuspec);
                using var licenseReader = new StreamReader(zip.GetEntry("LICENSE")!.Open());
                Assert.StartsWith("MIT License", licenseReader.ReadToEnd());
            }

            string sample = Path.Combine(root, "samples", "SpecVm.Sample");

            // A fresh package folder each time, so a stale extracted copy of the same version can never hide a broken pack.
            Run(sample, "dotnet", $"restore --packages \"{packages}\"");
            string stdout = Run(sample, "dotnet", "run --no-restore -c Release");
            Assert.Contains("sample OK", stdout);

            // The sample's own strategy, built against the package's public API: the first write retries under the mmap
            // lock (the VMA has no anon_vma yet), the second completes under the VMA lock.
            Assert.Contains("custom strategy vma-lock-or-mmap-lock: faults 2, vma lock 1, mmap lock 1", stdout);
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

    [Fact]
    public void TheXmlDocumentationFileShipsBesideTheAssembly()
    {
        // Every public member having a summary is enforced by the build (GenerateDocumentationFile with CS1591 as an
        // error); this checks that the documentation file the package packs is produced beside the assembly.
        string xml = Path.ChangeExtension(typeof(SpecVm.Sync.CacheLine).Assembly.Location, ".xml");
        Assert.True(File.Exists(xml), $"missing {xml}");
        Assert.Contains("<member name=\"T:SpecVm.Mm.AddressSpace\">", File.ReadAllText(xml));
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
