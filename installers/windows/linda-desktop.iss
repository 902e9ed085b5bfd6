; Inno Setup 6 script for Linda Desktop: a per-user install that needs no administrator rights.
;
;   ISCC.exe /DAppVersion=0.1.0 /DBundleDir=dist\linda-desktop /DRepoDir=. /Odist installers\windows\linda-desktop.iss
;
; (installers/build_release.py runs exactly that.) The bundle is the PyInstaller one-dir build:
; LindaDesktop.exe (the tray, no console window) and linda-desktop.exe (the command line).
;
; Kept in step with the app (tests/installers/test_installer_files.py checks it):
; - AppMutex = the named mutex the running app holds (system/single_instance.py MUTEX_NAME), so
;   setup and uninstall never replace files under a running app.
; - "Start at login" writes the same HKCU Run value the app writes (system/autostart.py):
;   name "Linda Desktop", data "<quoted path to LindaDesktop.exe>" --background.
; - User data lives in %LOCALAPPDATA%\Linda\LindaDesktop (platformdirs, author "Linda"); the
;   uninstaller asks before deleting it, and keeps it when run silently.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\linda-desktop"
#endif
#ifndef RepoDir
  #define RepoDir "..\.."
#endif
#define AppName "Linda Desktop"
#define AppExe "LindaDesktop.exe"
#define CliExe "linda-desktop.exe"
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"
#define ApprovedKey "Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
#define RunValue "Linda Desktop"
#define DataDir "{localappdata}\Linda\LindaDesktop"

[Setup]
AppId={{18CA8578-FE32-471B-A4A1-F3C9832765DE}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Linda Desktop engineers
VersionInfoVersion={#AppVersion}
VersionInfoDescription={#AppName} Setup
; Per-user: installs into %LOCALAPPDATA%\Programs, writes HKCU only, never asks for elevation.
PrivilegesRequired=lowest
DefaultDirName={localappdata}\Programs\{#AppName}
DisableProgramGroupPage=yes
DisableDirPage=auto
UsedUserAreasWarning=no
; Never overwrite a running app: setup (and uninstall) wait until it is closed.
AppMutex=LindaDesktopMutex
SetupMutex=LindaDesktopSetupMutex
CloseApplications=no
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputBaseFilename=LindaDesktop-{#AppVersion}-setup
SetupIconFile={#RepoDir}\linda_desktop\resources\icons\app.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
WizardStyle=modern
Compression=lzma2/max
SolidCompression=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[CustomMessages]
english.AutostartTask=Start {#AppName} when I sign in (recommended: it keeps WhatsApp linked)
english.RemoveDataPrompt=Also delete your Linda Desktop data?%n%nThis removes the linked WhatsApp session and all its backups from this computer:%n%1%n%nChoose No to keep them (a new install picks them up again).

[Tasks]
Name: "autostart"; Description: "{cm:AutostartTask}"
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; Files of an older version that a new bundle no longer has must not linger beside the new ones.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Keeps your WhatsApp Web session alive"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; The same value `linda-desktop autostart enable` writes (the app's Settings toggle reads it back).
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "{#RunValue}"; ValueData: """{app}\{#AppExe}"" --background"; Tasks: autostart; Flags: uninsdeletevalue
; An earlier "Disabled" from Task Manager would silently keep it off: clear it, as the app does.
Root: HKCU; Subkey: "{#ApprovedKey}"; ValueType: none; ValueName: "{#RunValue}"; Tasks: autostart; Flags: deletevalue

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
{ The app may have turned "start at login" on by itself (its menu), which setup did not log:
  remove the value on uninstall in every case, and only then ask about the user's data. }
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  DataPath: String;
begin
  if CurUninstallStep = usUninstall then
  begin
    RegDeleteValue(HKEY_CURRENT_USER, '{#RunKey}', '{#RunValue}');
    RegDeleteValue(HKEY_CURRENT_USER, '{#ApprovedKey}', '{#RunValue}');
  end;
  if CurUninstallStep = usPostUninstall then
  begin
    DataPath := ExpandConstant('{#DataDir}');
    if DirExists(DataPath) then
    begin
      { Default No: a silent uninstall (/SUPPRESSMSGBOXES) keeps the data. }
      if SuppressibleMsgBox(FmtMessage(CustomMessage('RemoveDataPrompt'), [DataPath]),
                            mbConfirmation, MB_YESNO or MB_DEFBUTTON2, IDNO) = IDYES then
      begin
        DelTree(DataPath, True, True, True);
        RemoveDir(ExpandConstant('{localappdata}\Linda'));
      end;
    end;
  end;
end;
