using System.Collections;
using System.Diagnostics;
using System.Reflection;
using System.Runtime;
using System.Runtime.InteropServices;
using SpecVm.Smp;

namespace SpecVm.Scaling;

/// <summary>Collects <see cref="MachineInfo"/> about the current machine and <see cref="RuntimeSettings"/> about this process.</summary>
internal static class MachineInfoProbe
{
    /// <summary>
    /// The build and runtime settings of this process: the library's build configuration and whether the JIT
    /// optimises it, tiered compilation and PGO, the GC flavour, and every DOTNET_/COMPlus_ variable. Never throws.
    /// </summary>
    public static RuntimeSettings CollectRuntime()
    {
        Assembly library = typeof(MachineInfoProbe).Assembly;
        var settings = new RuntimeSettings
        {
            BuildConfiguration = library.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "unknown",
            JitOptimized = library.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled != true,
            TieredCompilation = Switch("System.Runtime.TieredCompilation", "TieredCompilation", true),
            TieredPgo = Switch("System.Runtime.TieredPGO", "TieredPGO", true),
            QuickJitForLoops = Switch("System.Runtime.TieredCompilation.QuickJitForLoops", "TC_QuickJitForLoops", true),
            ServerGc = GCSettings.IsServerGC,
            ConcurrentGc = Switch("System.GC.Concurrent", "gcConcurrent", true),
            GcLatencyMode = GCSettings.LatencyMode.ToString(),
        };
        foreach (DictionaryEntry e in System.Environment.GetEnvironmentVariables())
        {
            string key = (string)e.Key;
            // The runtime's knobs; the SDK's own (DOTNET_CLI_*, DOTNET_NOLOGO, ...) do not change a measurement.
            bool runtimeKnob = key.StartsWith("COMPlus_", StringComparison.Ordinal)
                || (key.StartsWith("DOTNET_", StringComparison.Ordinal) && !key.StartsWith("DOTNET_CLI_", StringComparison.Ordinal)
                    && key is not ("DOTNET_NOLOGO" or "DOTNET_GENERATE_ASPNET_CERTIFICATE" or "DOTNET_SKIP_FIRST_TIME_EXPERIENCE"));
            if (runtimeKnob)
            {
                settings.Environment[key] = e.Value as string ?? string.Empty;
            }
        }

        return settings;
    }

    /// <summary>
    /// A runtime switch as the runtime resolves it: the DOTNET_/COMPlus_ environment variable wins, then the
    /// runtimeconfig.json property (AppContext), then the runtime's default.
    /// </summary>
    private static bool Switch(string appContextName, string environmentName, bool defaultValue)
    {
        foreach (string prefix in (string[])["DOTNET_", "COMPlus_"])
        {
            string? v = System.Environment.GetEnvironmentVariable(prefix + environmentName);
            if (v is "0" or "1")
            {
                return v == "1";
            }
        }

        if (AppContext.TryGetSwitch(appContextName, out bool on))
        {
            return on;
        }

        return AppContext.GetData(appContextName) is string s && bool.TryParse(s, out bool parsed) ? parsed : defaultValue;
    }

    /// <summary>Describes this machine; never throws (unknown fields stay empty).</summary>
    public static MachineInfo Collect()
    {
        var info = new MachineInfo
        {
            CpuModel = CpuModel(),
            LogicalCores = Environment.ProcessorCount,
            AllowedCores = Affinity.AllowedCores.Count,
            Os = RuntimeInformation.OSDescription,
            DotNet = RuntimeInformation.FrameworkDescription,
            MemoryBytes = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
            KernelRelease = ReadFirstLine("/proc/sys/kernel/osrelease"),
        };
        Topology(info);
        string? head = Git("rev-parse HEAD");
        if (head != null)
        {
            info.GitCommit = head.Trim();
            string? status = Git("status --porcelain --untracked-files=no");
            info.GitDirty = status == null ? null : status.Trim().Length > 0;
        }

        return info;
    }

    /// <summary>Sockets, physical cores and SMT siblings from /proc/cpuinfo's "physical id" and "core id" lines.</summary>
    private static void Topology(MachineInfo info)
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo"))
            {
                return;
            }

            var cores = new HashSet<(string Package, string Core)>();
            var packages = new HashSet<string>();
            string package = "0";
            int logical = 0;
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon < 0)
                {
                    continue;
                }

                string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                if (key == "processor")
                {
                    logical++;
                }
                else if (key == "physical id")
                {
                    package = value;
                    packages.Add(value);
                }
                else if (key == "core id")
                {
                    cores.Add((package, value));
                }
            }

            if (cores.Count > 0 && logical > 0)
            {
                info.PhysicalCores = cores.Count;
                info.Sockets = Math.Max(1, packages.Count);
                info.ThreadsPerCore = Math.Max(1, logical / cores.Count);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string? ReadFirstLine(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadLines(path).FirstOrDefault()?.Trim() : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string CpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (line.StartsWith("model name", StringComparison.Ordinal) || line.StartsWith("Model", StringComparison.Ordinal))
                    {
                        int colon = line.IndexOf(':', StringComparison.Ordinal);
                        if (colon > 0)
                        {
                            return line[(colon + 1)..].Trim();
                        }
                    }
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static string? Git(string arguments)
    {
        try
        {
            var psi = new ProcessStartInfo("git", arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            using Process? p = Process.Start(psi);
            if (p == null)
            {
                return null;
            }

            string output = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(5000) || p.ExitCode != 0)
            {
                return null;
            }

            return output;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }
}
