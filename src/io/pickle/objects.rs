//! The objects a legacy torch pickle can build: plain Python values, the accepted globals,
//! storages named by persistent ids and `_rebuild_tensor_v2` calls. Containers hold arena
//! indices ([`Id`]), never objects, so the object graph is flat.

/// Index of an object in the pickle machine's arena.
pub(super) type Id = usize;

/// Element type of a torch storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    Float,
    Double,
    Half,
    BFloat16,
    Long,
    Int,
    Short,
    Char,
    Byte,
    Bool,
}

impl StorageType {
    pub(super) fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Float,
            "DoubleStorage" => Self::Double,
            "HalfStorage" => Self::Half,
            "BFloat16Storage" => Self::BFloat16,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            "ShortStorage" => Self::Short,
            "CharStorage" => Self::Char,
            "ByteStorage" => Self::Byte,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Double | Self::Long => 8,
            Self::Float | Self::Int => 4,
            Self::Half | Self::BFloat16 | Self::Short => 2,
            Self::Char | Self::Byte | Self::Bool => 1,
        }
    }
}

/// The callables a stream may name with `GLOBAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(StorageType),
}

/// A storage named by a persistent id `('storage', <Type>Storage, key, location, size)`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StorageRef {
    pub key: String,
    pub dtype: StorageType,
    pub size: usize,
}

/// The arguments of a `_rebuild_tensor_v2(storage, offset, size, stride, ...)` call.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Obj {
    None,
    Bool(bool),
    Int(i128),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// Also what `OrderedDict()` builds; entries keep insertion order.
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

pub(super) fn kind(o: &Obj) -> &'static str {
    match o {
        Obj::None => "None",
        Obj::Bool(_) => "bool",
        Obj::Int(_) => "int",
        Obj::Str(_) => "str",
        Obj::Tuple(_) => "tuple",
        Obj::List(_) => "list",
        Obj::Dict(_) => "dict",
        Obj::Global(_) => "global",
        Obj::Storage(_) => "storage",
        Obj::Tensor(_) => "tensor",
    }
}
