//! Flags that give the container the one GPU the client assigned to the
//! task, never all of them.

use std::fmt;

/// Why the assigned GPU cannot be given to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuError {
    InvalidDevice {
        gpu_type: String,
        device_num: i32,
    },
    /// `use_gpu` is set, but the task got no GPU.
    NoGpu,
    Unsupported {
        gpu_type: String,
    },
    /// A device node the flags name is not on the engine's host.
    MissingDevice {
        path: String,
    },
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::InvalidDevice {
                gpu_type,
                device_num,
            } => write!(
                f,
                "the client assigned no valid {gpu_type} device (number {device_num})"
            ),
            GpuError::NoGpu => {
                f.write_str("use_gpu is set but the client assigned no GPU to this task")
            }
            GpuError::Unsupported { gpu_type } => {
                write!(f, "GPU type '{gpu_type}' cannot be passed into a container")
            }
            GpuError::MissingDevice { path } => {
                write!(f, "its device {path} is not on this host")
            }
        }
    }
}

impl std::error::Error for GpuError {}

/// `gpu_type` as the client writes it in init_data.xml.
pub fn gpu_args(podman: bool, gpu_type: &str, device_num: i32) -> Result<Vec<String>, GpuError> {
    if device_num < 0 {
        return Err(GpuError::InvalidDevice {
            gpu_type: gpu_type.to_string(),
            device_num,
        });
    }
    // Render nodes are numbered from 128 in the order the kernel found the GPUs.
    let render_node = format!("/dev/dri/renderD{}", 128 + device_num);
    let args = match gpu_type.to_ascii_lowercase().as_str() {
        "nvidia" if podman => vec!["--device".into(), format!("nvidia.com/gpu={device_num}")],
        "nvidia" => vec!["--gpus".into(), format!("device={device_num}")],
        "ati" | "amd" => vec![
            "--device".into(),
            "/dev/kfd".into(),
            "--device".into(),
            render_node,
        ],
        "intel_gpu" | "intel" => vec!["--device".into(), render_node],
        "" => return Err(GpuError::NoGpu),
        other => {
            return Err(GpuError::Unsupported {
                gpu_type: other.to_string(),
            })
        }
    };
    Ok(args)
}

/// The first host device node that `args` pass in and that does not exist:
/// the engine would refuse it, or start the job with no GPU at all.
pub fn missing_device(args: &[String], exists: impl Fn(&str) -> bool) -> Option<GpuError> {
    args.windows(2)
        .filter(|pair| pair[0] == "--device" && pair[1].starts_with("/dev/"))
        .map(|pair| pair[1].as_str())
        .find(|path| !exists(path))
        .map(|path| GpuError::MissingDevice {
            path: path.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_assigned_device() {
        assert_eq!(
            gpu_args(false, "NVIDIA", 1).unwrap(),
            ["--gpus", "device=1"]
        );
        assert_eq!(
            gpu_args(true, "NVIDIA", 0).unwrap(),
            ["--device", "nvidia.com/gpu=0"]
        );
        assert_eq!(
            gpu_args(false, "ATI", 2).unwrap(),
            ["--device", "/dev/kfd", "--device", "/dev/dri/renderD130"]
        );
        assert_eq!(
            gpu_args(true, "intel_gpu", 0).unwrap(),
            ["--device", "/dev/dri/renderD128"]
        );
    }

    #[test]
    fn a_device_node_the_host_lacks_is_named() {
        let args = gpu_args(false, "ATI", 1).unwrap();
        let only_kfd = |path: &str| path == "/dev/kfd";
        assert_eq!(
            missing_device(&args, only_kfd),
            Some(GpuError::MissingDevice {
                path: "/dev/dri/renderD129".into()
            })
        );
        assert_eq!(missing_device(&args, |_| true), None);
        // NVIDIA's are names the engine resolves, not host paths.
        let nvidia = gpu_args(true, "NVIDIA", 0).unwrap();
        assert_eq!(missing_device(&nvidia, |_| false), None);
    }

    #[test]
    fn no_or_unknown_gpu_is_an_error() {
        assert!(gpu_args(false, "", 0).is_err());
        assert!(gpu_args(false, "apple_gpu", 0).is_err());
        assert!(gpu_args(false, "NVIDIA", -1).is_err());
    }
}
