using System.Diagnostics;
using System.Runtime.InteropServices;
using SpecVm.Smp;

namespace SpecVm.Scaling;

/// <summary>Collects <see cref="MachineInfo"/> about the current machine.</summary>
public static class MachineInfoProbe
{
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
        };
        string? head = Git("rev-parse HEAD");
        if (head != null)
        {
            info.GitCommit = head.Trim();
            string? status = Git("status --porcelain --untracked-files=no");
            info.GitDirty = status == null ? null : status.Trim().Length > 0;
        }

        return info;
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
