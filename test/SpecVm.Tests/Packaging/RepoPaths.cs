namespace SpecVm.Tests.Packaging;

/// <summary>Locates the repository root (the folder holding SpecVm.sln) from the test's output folder.</summary>
internal static class RepoPaths
{
    public static string Root
    {
        get
        {
            for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "SpecVm.sln")))
                {
                    return d.FullName;
                }
            }

            throw new InvalidOperationException("SpecVm.sln not found above " + AppContext.BaseDirectory);
        }
    }
}
